"""`output`, the whole training configuration, and the trainer's input (a named
configuration with its scaling)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from finetune_trainer.config.base import Spec
from finetune_trainer.config.data import DataSpec
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

    keepCheckpoints: int = Field(default=2, ge=1, le=100)
    """How many checkpoints to keep per trial."""

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")


# --------------------------------------------------------------- the whole config


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

    tune: Optional[TuneSpec] = None
    """Optional hyperparameter sweep."""

    output: OutputSpec
    """Where results go."""

    CEL_RULES = (
        ("!has(self.tune) || self.tune.searchSpace.all(k, ['partial', 'gradualUnfreezing', 'lora'].all(b,"
         " !k.startsWith('strategy.' + b + '.') || (has(self.strategy) ? self.strategy.type : 'full') == b))",
         "tune.searchSpace can tune the settings of strategy.type only"),
    )

    @model_validator(mode="after")
    def _fp16_scaler_needs_fp32_weights(self) -> "TrainingConfig":
        if self.model.loadDtype in ("float16", "bfloat16") and self.training.precision == "fp16":
            raise ValueError(
                f"model.loadDtype {self.model.loadDtype} cannot train with training.precision fp16: the "
                "gradient scaler needs fp32 weights; use model.loadDtype float32 (the default) or "
                "training.precision bf16"
            )
        return self

    @model_validator(mode="after")
    def _tuned_strategy_settings_apply(self) -> "TrainingConfig":
        if self.tune is not None:
            for path in self.tune.searchSpace:
                head, _, rest = path.partition(".")
                if head == "strategy" and "." in rest:
                    block = rest.split(".", 1)[0]
                    if block != self.strategy.type:
                        raise ValueError(
                            f"tune.searchSpace can tune the settings of strategy.type only "
                            f"('{path}' tunes {block}, but strategy.type is {self.strategy.type})"
                        )
        return self


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
        dimension = config.tune.searchSpace.get(path) if config.tune is not None else None
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

    numWorkers: int = Field(default=1, ge=1, le=4096)
    """Data-parallel workers per trial."""

    cpusPerWorker: float = Field(default=1.0, gt=0)
    """Logical CPUs each worker reserves in Ray."""

    gpusPerWorker: float = Field(default=0.0, ge=0)
    """GPUs each worker reserves; above 0 means training on GPU with NCCL."""

    acceleratorType: Optional[str] = None
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
    def _distribution_fits(self) -> "JobConfig":
        problem = distribution_problem_in(self.scaling.distributed, self.scaling.numWorkers, self.config,
                                          field="scaling.distributed", workers_field="scaling.numWorkers")
        if problem:
            raise ValueError(problem)
        return self
