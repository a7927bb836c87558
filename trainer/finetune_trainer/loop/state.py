"""Where a worker's run stands: its position, its totals and the running window
between two reports, plus the numbers of batches and steps fixed at the start."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Plan:
    """The run's batches and optimizer steps, the same on every rank."""

    batch_size: int
    accumulation: int
    """Batches per optimizer step (gradient accumulation)."""
    batches_per_epoch: int
    """Every rank's batches per epoch: the smallest shard's, so collectives stay in step."""
    steps_per_epoch: int
    total_steps: int
    total_epochs: int


@dataclass
class Window:
    """Running totals on this rank since the previous report."""

    loss_sum: float = 0.0
    loss_count: int = 0
    samples: int = 0
    tokens: int = 0
    steps: int = 0
    eval_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def add_batch(self, loss: float, batch: dict[str, Any], samples: int, tokens: int = 0) -> None:
        """Count one batch of `samples` examples and `tokens` real tokens whose mean
        loss was `loss`."""
        count = batch["labels"].numel()
        self.loss_sum += loss * count
        self.loss_count += count
        self.samples += samples
        self.tokens += tokens

    def clear(self) -> None:
        """Zero the totals (the clock restarts separately, once the report is sent)."""
        self.loss_sum, self.loss_count, self.samples, self.tokens, self.steps = 0.0, 0, 0, 0, 0
        self.eval_seconds = 0.0


@dataclass
class LoopState:
    """The run's position and what a checkpoint carries across restarts."""

    step: int = 0
    """Optimizer steps taken over the whole run."""
    epoch: int = 0
    batch_in_epoch: int = 0
    """Batches of `epoch` already trained (where a resumed epoch continues)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: Optional[int] = None
    """The step this worker group resumed from, if it did."""
    restored_from: Optional[dict[str, Any]] = None
    """Under PBT, the trial and weights these weights continue."""
    train_seconds: float = 0.0
    total_samples: int = 0
    last_eval: dict[str, float] = field(default_factory=dict)
    stop_early: bool = False
    window: Window = field(default_factory=Window)

    def position(self, plan: Plan) -> tuple[int, int]:
        """(epoch, batch in epoch) a resumed run starts at: after an epoch's last batch,
        the next epoch's start."""
        if self.batch_in_epoch == plan.batches_per_epoch:
            return self.epoch + 1, 0
        return self.epoch, self.batch_in_epoch


def due(interval: Any, unit: str, count: int) -> bool:
    """Whether an `every`/`unit` interval (evaluation or checkpoint) falls on `count`
    steps or epochs."""
    return interval.unit == unit and count > 0 and count % interval.every == 0


__all__ = ["LoopState", "Plan", "Window", "due"]
