"""What one worker of a run works with: `WorkerContext`, set up once (config, rank,
device, data, plan), and `TrainingParts`, the objects that train and that a change
of the trainable set (gradual unfreezing) rebuilds mid-run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from finetune_trainer.config import JobConfig, TrainingConfig
from finetune_trainer.loop.hooks import LoopHooks
from finetune_trainer.loop.reducer import Reducer
from finetune_trainer.loop.state import Plan


@dataclass
class WorkerContext:
    """A worker's fixed set-up for the run."""

    job: JobConfig
    config: TrainingConfig
    """The job's config with the trial's overrides applied."""
    trial_id: str
    rank: int
    world_size: int
    device: Any
    reducer: Reducer
    autocast_dtype: Any
    """torch dtype for autocast (mixed precision on a GPU), else None."""
    train_set: Any
    validation_set: Any
    collate: Callable
    label_names: list[str]
    plan: Plan
    stopper: Any
    """The EarlyStopper, when early stopping is configured."""
    hooks: LoopHooks
    task: Any = None
    """The task (finetune_trainer.tasks): what the examples, model and metrics are."""
    metrics_sink: Any = None
    """WorkerMetrics on rank 0, else None."""
    data_report: Optional[dict[str, Any]] = None
    """The data report of all ranks together (`DataReport.to_dict`), saved with every
    checkpoint for finishing."""
    parallel: Any = None
    """How the workers share the model (`finetune_trainer.loop.parallel`: ddp or fsdp)."""
    overrides: Optional[dict[str, Any]] = None
    """The trial's hyperparameters (manifest path -> value) that `config` applies;
    saved with every checkpoint, so the sweep can name what trained the one it picks."""


@dataclass
class TrainingParts:
    """The model and what steps it. `core` is the unwrapped model; `model` is `core`
    prepared for the worker group (DDP for more than one worker; under FSDP `core`
    itself, sharded in place)."""

    core: Any
    model: Any
    controller: Any
    """The fine-tuning strategy's controller (which parameters train, and when)."""
    optimizer: Any
    scheduler: Any
    scaler: Optional[Any]
    """The GradScaler for fp16 on a GPU, else None."""
    wrap: Callable[[Any], Any]
    """Prepare `core` for training on this worker group (DDP when distributed)."""

    def rewrap_if_needed(self, training: Any, total_steps: int) -> None:
        """After the strategy changed which parameters train: newly trainable parameters
        are not in the optimizer or DDP's hooks, so rebuild both, carrying the
        schedule's position and the optimizer's state over."""
        from finetune_trainer.optim import rebuild_optimizer

        if not self.controller.trainable_changed:
            return
        self.controller.trainable_changed = False
        self.optimizer, self.scheduler = rebuild_optimizer(self.optimizer, self.scheduler, self.core, training,
                                                           total_steps)
        self.model = self.wrap(self.core)


__all__ = ["TrainingParts", "WorkerContext"]
