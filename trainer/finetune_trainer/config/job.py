"""`output`, the whole training configuration, and the trainer's input (a named
configuration with its scaling)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from finetune_trainer.config.base import Rule, Spec
from finetune_trainer.config.causal_lm import CAUSAL_LM_RULES, CausalLmSpec
from finetune_trainer.config.data import DataSpec
from finetune_trainer.config.image import ImageSpec
from finetune_trainer.config.model import ModelSpec
from finetune_trainer.config.strategy import StrategySpec
from finetune_trainer.config.training import TrainingSpec
from finetune_trainer.config.tune import TuneSpec
from finetune_trainer.search_space import set_path


class OutputSpec(Spec):
    """Where the model, metrics and checkpoints go."""

    uri: str = Field(min_length=1)
    """`s3://bucket/prefix` or a local path. Each job writes under `<uri>/<job name>/`."""

    endpoint: Optional[str] = Field(default=None, pattern=r"^https?://[^\s/]+(/.*)?$")
    """S3 endpoint URL for S3-compatible stores (MinIO, SeaweedFS, Ceph)."""

    region: Optional[str] = None
    """S3 region."""

    keep_checkpoints: int = Field(default=2, ge=1, le=100)
    """How many checkpoints to keep per trial."""

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")


# --------------------------------------------------------------- the whole config


_IMAGE = "'image-classification'"
_TASK_RULES = (
    # (CEL rule on the whole config, message, offline check: True when the rule is broken)
    (f"!has(self.image) || self.model.task == {_IMAGE}",
     "image: allowed only with model.task image-classification",
     lambda c: c.image is not None and c.model.task != "image-classification"),
    (f"!has(self.data.format) || self.data.format != 'imagefolder' || self.model.task == {_IMAGE}",
     "data.format imagefolder is allowed only with model.task image-classification",
     lambda c: c.data.format == "imagefolder" and c.model.task != "image-classification"),
    (f"!has(self.data.textPairColumn) || self.model.task != {_IMAGE}",
     "data.textPairColumn cannot be used with model.task image-classification (images have no text pair)",
     lambda c: c.data.text_pair_column is not None and c.model.task == "image-classification"),
    (f"!has(self.data.augmentation) || self.model.task != {_IMAGE}",
     "data.augmentation (word dropout/swap) cannot be used with model.task image-classification; "
     "use image.augmentation",
     lambda c: c.data.augmentation is not None and c.model.task == "image-classification"),
)
"""Settings that only one task can use, refused with the field named."""


class TrainingConfig(Spec):
    """Everything the trainer needs to know about a fine-tune, and nothing of
    Kubernetes."""

    model: ModelSpec
    """The pre-trained model."""

    data: DataSpec
    """The training, validation and test data."""

    strategy: StrategySpec = Field(default_factory=StrategySpec)
    """Which parameters are fine-tuned."""

    training: TrainingSpec = Field(default_factory=TrainingSpec)
    """Hyperparameters."""

    image: Optional[ImageSpec] = None
    """Image settings (image column, unreadable images, augmentation); only with
    `model.task: image-classification`."""

    tune: Optional[TuneSpec] = None
    """Optional hyperparameter sweep."""

    output: OutputSpec
    """Where results go."""

    causal_lm: Optional[CausalLmSpec] = None
    """Settings of `model.task: causal-lm` (record layout, prompt template, loss
    masking, packing); allowed only with that task, defaults when absent."""

    RULES = (
        Rule("!has(self.tune) || self.tune.searchSpace.all(k, ['partial', 'gradualUnfreezing', 'lora'].all(b,"
             " !k.startsWith('strategy.' + b + '.') || (has(self.strategy) ? self.strategy.type : 'full') == b"
             " || (b == 'lora' && has(self.strategy) && self.strategy.type == 'qlora')))",
             "tune.searchSpace can tune the settings of strategy.type only",
             lambda s: s.foreign_strategy_path is None,
             lambda s: f"'{s.foreign_strategy_path}' tunes {s.foreign_strategy_path.split('.')[1]}, "
                       f"but strategy.type is {s.strategy.type}"),
        *(Rule(cel, message, lambda c, refused=refused: not refused(c)) for cel, message, refused in _TASK_RULES),
        *CAUSAL_LM_RULES,
    )

    @property
    def causal_lm_settings(self) -> CausalLmSpec:
        """The `causalLm` block, its defaults when absent."""
        return self.causal_lm or CausalLmSpec()

    @property
    def foreign_strategy_path(self) -> Optional[str]:
        """The first searched path into the settings of a strategy other than the one
        strategy.type reads (`qlora` reads `lora`), if any."""
        for path in self.tune.search_space if self.tune is not None else ():
            head, _, rest = path.partition(".")
            if head == "strategy" and "." in rest and rest.split(".", 1)[0] != self.strategy.settings_key:
                return path
        return None

    # Replaces Spec's validator of the same name, so that this check comes before the
    # rules, as it always has. It is not in the CRD (the API server lets the
    # combination through, and the trainer refuses it).
    @model_validator(mode="after")
    def _obey_rules(self) -> "TrainingConfig":
        self.check_half_precision()
        self.check_rules()
        return self

    def check_half_precision(self) -> None:
        """fp16 training needs fp32 weights under its gradient scaler."""
        if self.model.load_dtype in ("float16", "bfloat16") and self.training.precision == "fp16":
            raise ValueError(
                f"model.loadDtype {self.model.load_dtype} cannot train with training.precision fp16: the "
                "gradient scaler needs fp32 weights; use model.loadDtype float32 (the default) or "
                "training.precision bf16"
            )


def selection_metric(config: TrainingConfig) -> tuple[str, str]:
    """The (metric, mode) that decides "best", for checkpoints, trials and the status:
    the sweep's, else early stopping's, else the validation loss."""
    if config.tune is not None:
        return config.tune.metric, config.tune.mode
    if config.training.early_stopping is not None:
        return config.training.early_stopping.metric, config.training.early_stopping.mode
    return "eval_loss", "min"


def with_overrides(config: TrainingConfig, overrides: dict[str, Any]) -> TrainingConfig:
    """A validated copy of `config` with dotted-path overrides (a Tune trial's
    hyperparameters) applied."""
    document = config.to_dict()
    for path, value in overrides.items():
        set_path(document, path, value)
    return TrainingConfig.model_validate(document)


Distributed = Literal["ddp", "fsdp"]
"""How a job's workers share the model: `ddp` keeps a whole copy on every worker and
averages gradients; `fsdp` (FSDP2, `torch.distributed.fsdp.fully_shard`) shards the
parameters, gradients and optimizer state across the workers."""

# What FSDP cannot run, and why; the same words for the operator's fields and the trainer's.
FSDP_STRATEGY_LIMIT = ("gradualUnfreezing",)


def distribution_problem(distributed: str, workers: int, strategy: str, precision: str, *, field: str,
                         workers_field: str) -> Optional[str]:
    """Why `distributed` cannot run with these settings, or None. `field` and
    `workers_field` are the names the user wrote (`resources.distributed` in a
    FineTuneJob, `scaling.distributed` in a JobConfig)."""
    if distributed != "fsdp":
        return None
    if workers < 2:
        return (f"{field} fsdp shards the model across workers and needs at least 2 workers ({workers_field} "
                f"gives {workers}); use {field} ddp for one worker")
    if strategy in FSDP_STRATEGY_LIMIT:
        return (f"{field} fsdp cannot run strategy.type {strategy}: the sharded model cannot be re-wrapped when "
                f"layers unfreeze mid-run; use strategy.type full, partial, featureExtraction or lora, or "
                f"{field} ddp")
    if precision == "fp16":
        return (f"{field} fsdp cannot run training.precision fp16: the gradient scaler checks each shard for "
                f"overflow on its own, so workers would disagree on skipping a step; use training.precision bf16 "
                f"or fp32, or {field} ddp")
    return None


def distribution_problem_in(distributed: str, workers: int, config: "TrainingConfig", *, field: str,
                            workers_field: str) -> Optional[str]:
    """`distribution_problem` for `config` and for every strategy and precision its
    sweep may choose (a trial of `tune.searchSpace` runs with the same workers)."""
    def candidates(path: str, current: str) -> list[str]:
        dimension = config.tune.search_space.get(path) if config.tune is not None else None
        return [current, *[v for v in (dimension.values or []) if isinstance(v, str)]] if dimension else [current]

    for strategy in candidates("strategy.type", config.strategy.type):
        for precision in candidates("training.precision", config.training.precision):
            problem = distribution_problem(distributed, workers, strategy, precision, field=field,
                                           workers_field=workers_field)
            if problem:
                swept = strategy != config.strategy.type or precision != config.training.precision
                return problem + (" (a value tune.searchSpace can choose)" if swept else "")
    return None


class ScalingSpec(Spec):
    """How many Ray Train workers, and what each holds."""

    num_workers: int = Field(default=1, ge=1, le=4096)
    """Data-parallel workers per trial."""

    cpus_per_worker: float = Field(default=1.0, gt=0)
    """Logical CPUs each worker reserves in Ray."""

    gpus_per_worker: float = Field(default=0.0, ge=0)
    """GPUs each worker reserves; above 0 means training on GPU with NCCL."""

    accelerator_type: Optional[str] = None
    """Ray accelerator type to pin workers to, for example `A100`."""

    distributed: Distributed = "ddp"
    """`ddp`: every worker holds the whole model; `fsdp`: parameters, gradients and
    optimizer state are sharded across the workers (at least 2)."""


class JobConfig(Spec):
    """The trainer's whole input: a named training configuration and its scaling.

    The operator writes this as JSON into a ConfigMap; `finetune run` builds it from a
    manifest. The name keys the run's storage, so a restart with the same name and
    output resumes instead of starting over."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    """Run name: the storage folder under the output URI."""

    config: TrainingConfig
    """The training configuration."""

    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    """Workers and their resources."""

    @model_validator(mode="after")
    def _qlora_needs_gpus(self) -> "JobConfig":
        if self.config.strategy.type == "qlora" and self.scaling.gpus_per_worker <= 0:
            raise ValueError(
                "strategy.type qlora loads the base model in 4 bits with bitsandbytes, which needs a CUDA GPU "
                "on every worker; give the workers GPUs (scaling.gpusPerWorker; resources.worker.gpu "
                "in a FineTuneJob) or use strategy.type lora"
            )
        return self

    @model_validator(mode="after")
    def _distribution_fits(self) -> "JobConfig":
        problem = distribution_problem_in(self.scaling.distributed, self.scaling.num_workers, self.config,
                                          field="scaling.distributed", workers_field="scaling.numWorkers")
        if problem:
            raise ValueError(problem)
        return self
