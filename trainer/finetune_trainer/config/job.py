"""`output`, the whole training configuration, and the trainer's input (a named
configuration with its scaling)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, model_validator

from finetune_trainer.config.base import Spec
from finetune_trainer.config.causal_lm import CAUSAL_LM_CEL_RULES, CausalLmSpec, task_fit_errors
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

    causalLm: Optional[CausalLmSpec] = None
    """Settings of `model.task: causal-lm` (record layout, prompt template, loss
    masking, packing); allowed only with that task, defaults when absent."""

    CEL_RULES = (
        ("!has(self.tune) || self.tune.searchSpace.all(k, ['partial', 'gradualUnfreezing', 'lora'].all(b,"
         " !k.startsWith('strategy.' + b + '.') || (has(self.strategy) ? self.strategy.type : 'full') == b"
         " || (b == 'lora' && has(self.strategy) && self.strategy.type == 'qlora')))",
         "tune.searchSpace can tune the settings of strategy.type only"),
        *CAUSAL_LM_CEL_RULES,
    )

    @property
    def causal_lm(self) -> CausalLmSpec:
        """The `causalLm` block, its defaults when absent."""
        return self.causalLm or CausalLmSpec()

    @model_validator(mode="after")
    def _fits_the_task(self) -> "TrainingConfig":
        errors = task_fit_errors(self)
        if errors:
            raise ValueError("; ".join(errors))
        return self

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
                    if block != self.strategy.settings_block:
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
        if self.config.strategy.type == "qlora" and self.scaling.gpusPerWorker <= 0:
            raise ValueError(
                "strategy.type qlora loads the base model in 4 bits with bitsandbytes, which needs a CUDA GPU "
                "on every worker; give the workers GPUs (scaling.gpusPerWorker; resources.worker.gpu "
                "in a FineTuneJob) or use strategy.type lora"
            )
        return self
