"""Scoring a model on a (possibly sharded) split, and early stopping.

What is counted and which metrics come of it is the task's (`Task.evaluation_counts`,
`Task.metrics_from_counts`). Metrics are computed from counts summed over ranks, never
from per-rank averages, so a data-parallel evaluation gives exactly the
single-process result: pass a `reduce` that sums a tensor across ranks, such as
`all_reduce_sum`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from finetune_trainer.config import EarlyStoppingSpec

if TYPE_CHECKING:  # pragma: no cover
    from finetune_trainer.tasks.base import Task

Reduce = Callable[[Any], Any]


def all_reduce_sum(tensor: Any) -> Any:
    """Sum `tensor` over every rank of the default torch.distributed group (a no-op
    when none is initialised); a ready `reduce` for `evaluate`."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def evaluate(
    model: Any,
    dataloader: Any,
    device: Any = "cpu",
    reduce: Optional[Reduce] = None,
    *,
    task: "Task",
    label_names: Sequence[str],
    before_reduce: Optional[Callable[[], None]] = None,
) -> dict[str, float]:
    """The task's metrics of `model` over `dataloader`, its counts summed across ranks
    by `reduce` when given. Every rank must call it when `reduce` is a collective,
    even with an empty shard. `before_reduce` runs between counting and summing (a
    sharded model's padding forwards, which must not meet the sum's collective)."""
    counts = task.evaluation_counts(model, dataloader, device, label_names)
    if before_reduce is not None:
        before_reduce()
    if reduce is not None:
        counts = tuple(reduce(c) for c in counts)
    return task.metrics_from_counts(tuple(c.cpu() for c in counts))


class EarlyStopper:
    """Counts evaluations without improvement of one metric; says when to stop."""

    def __init__(self, spec: EarlyStoppingSpec) -> None:
        self.spec = spec
        self.best: Optional[float] = None
        self.bad_evaluations = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.spec.mode == "min":
            return value < self.best - self.spec.min_delta
        return value > self.best + self.spec.min_delta

    def update(self, metrics: dict[str, float]) -> bool:
        """Record one evaluation; True when training should stop."""
        if self.spec.metric not in metrics:
            raise KeyError(
                f"early stopping watches {self.spec.metric}, which the evaluation did not report "
                f"(reported: {', '.join(sorted(metrics))})"
            )
        value = float(metrics[self.spec.metric])
        if self.improved(value):
            self.best = value
            self.bad_evaluations = 0
        else:
            self.bad_evaluations += 1
        return self.bad_evaluations >= self.spec.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.bad_evaluations = int(state.get("bad_evaluations", 0))


__all__ = ["EarlyStopper", "all_reduce_sum", "evaluate"]
