"""The training configuration: what to fine-tune, on what data, and how.

These pydantic models are the single source of truth for the training part of a
FineTuneJob. The operator embeds them in its Kubernetes resource spec, the CRD schema
is generated from them, and the trainer validates its input with the very same code.
One module per block of the manifest: `model`, `data`, `strategy`, `training`, `tune`,
`causal_lm` (the `causalLm` block) and `job` (output, the whole config and the trainer's input).

Cross-field rules are declared once per model in ``RULES``: each `Rule` holds the CEL
expression (emitted into the CRD as ``x-kubernetes-validations``), the message, and
the same rule in Python, which `Spec`'s one validator checks offline. Checks CEL cannot
express are plain validators of their model.
"""

from finetune_trainer.config.base import EVAL_METRICS, MetricName, Mode, Rule, Spec
from finetune_trainer.config.causal_lm import CAUSAL_LM_METRICS, CAUSAL_LM_TASK, CausalLmFormat, CausalLmSpec
from finetune_trainer.config.data import AugmentationSpec, DataFormat, DataSpec
from finetune_trainer.config.image import ImageAugmentationSpec, ImageSpec
from finetune_trainer.config.job import (
    Distributed,
    JobConfig,
    OutputSpec,
    ScalingSpec,
    TrainingConfig,
    distribution_problem,
    distribution_problem_in,
    selection_metric,
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
    "CAUSAL_LM_METRICS", "CAUSAL_LM_TASK", "CausalLmFormat", "CausalLmSpec",
    "EVAL_METRICS", "MAX_SEARCH_DIMENSIONS", "AugmentationSpec", "DataFormat", "DataSpec", "DimensionType",
    "Distributed", "EarlyStoppingSpec", "GradualUnfreezingSpec", "ImageAugmentationSpec", "ImageSpec",
    "IntervalSpec", "JobConfig", "LoraSpec", "MetricName", "Mode",
    "ModelSpec", "OptimizerSpec", "OutputSpec", "PartialSpec", "Rule", "ScalingSpec", "SchedulerSpec",
    "SearchDimension",
    "Spec", "StrategySpec", "StrategyType", "TrainingConfig", "TrainingSpec", "TunablePath", "TuneSchedulerSpec",
    "TuneSpec", "distribution_problem", "distribution_problem_in", "selection_metric", "with_overrides",
]
