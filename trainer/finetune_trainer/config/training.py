"""`training`: the optimizer, schedule and the rest of the hyperparameters."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from finetune_trainer.config.base import MetricName, Mode, Rule, Spec


class OptimizerSpec(Spec):
    """The optimizer and its parameters."""

    name: Literal["adamw", "sgd", "rmsprop"] = "adamw"
    """`adamw`, `sgd` or `rmsprop`."""

    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    """AdamW first-moment decay."""

    beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    """AdamW second-moment decay."""

    epsilon: float = Field(default=1e-8, gt=0.0)
    """Numerical-stability term (AdamW, RMSprop)."""

    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Momentum (SGD, RMSprop)."""

    nesterov: bool = False
    """Nesterov momentum (SGD only; needs momentum > 0)."""

    alpha: float = Field(default=0.99, gt=0.0, lt=1.0)
    """RMSprop smoothing constant."""

    RULES = (
        Rule("!self.nesterov || (self.name == 'sgd' && self.momentum > 0.0)",
             "nesterov needs name sgd and momentum > 0",
             lambda s: not s.nesterov or (s.name == "sgd" and s.momentum > 0)),
    )


class SchedulerSpec(Spec):
    """The learning-rate schedule, after an optional linear warmup."""

    name: Literal["linear", "cosine", "constant"] = "linear"
    """`linear` decay to 0, `cosine` decay to 0, or `constant`."""

    warmup_steps: int = Field(default=0, ge=0)
    """Optimizer steps of linear warmup from 0 to the learning rate."""

    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Warmup as a share of all optimizer steps; used when warmupSteps is 0."""

    RULES = (
        Rule("self.warmupSteps == 0 || self.warmupRatio == 0.0",
             "set warmupSteps or warmupRatio, not both",
             lambda s: s.warmup_steps == 0 or s.warmup_ratio == 0.0),
    )


class IntervalSpec(Spec):
    """Every how many epochs or steps something happens."""

    every: int = Field(default=1, ge=1)
    """How many units between two occurrences."""

    unit: Literal["epoch", "step"] = "epoch"
    """`epoch` or `step` (optimizer steps)."""


class EarlyStoppingSpec(Spec):
    """Stop when a validation metric stops improving."""

    metric: MetricName = "eval_loss"
    """The validation metric to watch."""

    mode: Mode = "min"
    """`min` if lower is better, `max` if higher is better."""

    patience: int = Field(default=3, ge=1)
    """Evaluations without improvement before stopping."""

    min_delta: float = Field(default=0.0, ge=0.0)
    """Smallest change that counts as an improvement."""


class TrainingSpec(Spec):
    """Hyperparameters of one training run."""

    epochs: float = Field(default=3.0, gt=0.0, le=10000)
    """Passes over the training data. Ignored when maxSteps is set."""

    max_steps: Optional[int] = Field(default=None, ge=1)
    """Stop after this many optimizer steps; overrides epochs."""

    batch_size: int = Field(default=16, ge=1, le=65536)
    """Examples per worker per forward pass. The global batch is batchSize x workers x
    gradientAccumulationSteps."""

    gradient_accumulation_steps: int = Field(default=1, ge=1, le=4096)
    """Forward passes per optimizer step."""

    learning_rate: float = Field(default=5e-5, gt=0.0, le=10.0)
    """Peak learning rate."""

    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    """The optimizer."""

    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    """The learning-rate schedule."""

    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    """Decoupled weight decay; not applied to biases and LayerNorm weights."""

    dropout: Optional[float] = Field(default=None, ge=0.0, lt=1.0)
    """Override the model's dropout probabilities."""

    max_grad_norm: Optional[float] = Field(default=1.0, gt=0.0)
    """Clip the gradient norm to this value; set to null to disable clipping."""

    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Numeric precision. bf16 and fp16 need a GPU; on CPU the trainer falls back to
    fp32 with a warning."""

    seed: int = Field(default=42, ge=0)
    """Seed for weights of new layers, dropout and data order."""

    evaluation: IntervalSpec = Field(default_factory=IntervalSpec)
    """How often to evaluate on the validation split."""

    checkpoint: IntervalSpec = Field(default_factory=IntervalSpec)
    """How often to write a checkpoint."""

    early_stopping: Optional[EarlyStoppingSpec] = None
    """Stop early when the watched metric stops improving."""

    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of keeping them (the
    transformers gradient checkpointing): less memory for longer sequences or larger
    batches, at roughly a third more compute."""
