"""The training configuration: what to fine-tune, on what data, and how.

These pydantic models are the single source of truth for the training part of a
FineTuneJob. The operator embeds them in its Kubernetes resource spec, the CRD schema
is generated from them, and the trainer validates its input with the very same code.
One module per block of the manifest: `model`, `data`, `strategy`, `training`, `tune`,
and `job` (output, the whole config and the trainer's input).

Cross-field rules are declared once per model in ``CEL_RULES`` as pairs of a CEL
expression (emitted into the CRD as ``x-kubernetes-validations``) and the message the
API server shows; the pydantic validators enforce the same rules offline.
"""

from finetune_trainer.config.base import EVAL_METRICS, MetricName, Mode, Spec
from finetune_trainer.config.data import AugmentationSpec, DataFormat, DataSpec
from finetune_trainer.config.job import (
    Distributed,
    JobConfig,
    OutputSpec,
    ScalingSpec,
    TrainingConfig,
    distribution_problem,
    distribution_problem_in,
    with_overrides,
)
from finetune_trainer.config.model import ModelSpec
from finetune_trainer.config.strategy import (
    GradualUnfreezingSpec,
    LoraSpec,
    PartialSpec,
    StrategySpec,
    StrategyType,
)
from finetune_trainer.config.training import (
    EarlyStoppingSpec,
    IntervalSpec,
    OptimizerSpec,
    SchedulerSpec,
    TrainingSpec,
)
from finetune_trainer.config.tune import (
    MAX_SEARCH_DIMENSIONS,
    DimensionType,
    SearchDimension,
    TunablePath,
    TuneSchedulerSpec,
    TuneSpec,
)

__all__ = [
    "EVAL_METRICS", "MAX_SEARCH_DIMENSIONS", "AugmentationSpec", "DataFormat", "DataSpec", "DimensionType",
    "Distributed", "EarlyStoppingSpec", "GradualUnfreezingSpec", "IntervalSpec", "JobConfig", "LoraSpec", "MetricName", "Mode",
    "ModelSpec", "OptimizerSpec", "OutputSpec", "PartialSpec", "ScalingSpec", "SchedulerSpec", "SearchDimension",
    "Spec", "StrategySpec", "StrategyType", "TrainingConfig", "TrainingSpec", "TunablePath", "TuneSchedulerSpec",
    "TuneSpec", "distribution_problem", "distribution_problem_in", "with_overrides",
]
