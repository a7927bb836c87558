"""Scoring a classifier on a (possibly sharded) split, and early stopping.

Metrics are computed from summed counts (loss sum, example count, confusion matrix),
never from per-rank averages, so a data-parallel evaluation gives exactly the
single-process result: pass a `reduce` that sums a tensor across ranks, e.g.
`lambda t: (torch.distributed.all_reduce(t), t)[1]`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from finetune_trainer.config import EarlyStoppingSpec

Reduce = Callable[[Any], Any]


def all_reduce_sum(tensor: Any) -> Any:
    """Sum `tensor` over every rank of the default torch.distributed group (a no-op
    when none is initialised); a ready `reduce` for `evaluate`."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def metrics_from_counts(loss_sum: float, count: int, confusion: Any) -> dict[str, float]:
    """eval_loss (mean), eval_accuracy and macro F1 from a confusion matrix
    (rows: true class, columns: predicted). Macro F1 averages the classes that occur
    in the truth or the predictions, like scikit-learn without `labels`."""
    import torch

    confusion = torch.as_tensor(confusion, dtype=torch.float64)
    if count == 0:
        return {"eval_loss": float("nan"), "eval_accuracy": float("nan"), "eval_f1": float("nan")}
    true_positive = confusion.diag()
    support = confusion.sum(dim=1)
    predicted = confusion.sum(dim=0)
    present = (support + predicted) > 0
    f1 = 2 * true_positive / (support + predicted).clamp(min=1)
    return {
        "eval_loss": loss_sum / count,
        "eval_accuracy": float(true_positive.sum() / confusion.sum()),
        "eval_f1": float(f1[present].mean()) if bool(present.any()) else 0.0,
    }


def evaluation_counts(
    model: Any, dataloader: Any, device: Any = "cpu", num_labels: Optional[int] = None
) -> tuple[Any, Any]:
    """(tensor [loss sum, example count], confusion matrix) of `model` on this rank's
    batches; sums of these over ranks give the metrics of the whole split."""
    import torch

    core = getattr(model, "module", model)
    num_labels = num_labels or int(core.config.num_labels)
    was_training = model.training
    model.eval()
    stats = torch.zeros(2, dtype=torch.float64, device=device)
    confusion = torch.zeros(num_labels, num_labels, dtype=torch.float64, device=device)
    try:
        with torch.no_grad():
            for batch in dataloader:
                batch = {k: v.to(device) for k, v in batch.items()}
                labels = batch["labels"]
                outputs = model(**batch)
                stats[0] += float(outputs.loss) * labels.numel()
                stats[1] += labels.numel()
                predictions = outputs.logits.argmax(dim=-1)
                index = labels * num_labels + predictions
                confusion += (
                    torch.bincount(index, minlength=num_labels * num_labels)
                    .view(num_labels, num_labels)
                    .to(confusion.dtype)
                )
    finally:
        model.train(was_training)
    return stats, confusion


def evaluate(
    model: Any,
    dataloader: Any,
    device: Any = "cpu",
    reduce: Optional[Reduce] = None,
    num_labels: Optional[int] = None,
) -> dict[str, float]:
    """Loss, accuracy and macro F1 of `model` over `dataloader` (batches with a
    `labels` entry), summed across ranks by `reduce` when given. Every rank must call
    it when `reduce` is a collective, even with an empty shard."""
    stats, confusion = evaluation_counts(model, dataloader, device, num_labels)
    if reduce is not None:
        stats = reduce(stats)
        confusion = reduce(confusion)
    return metrics_from_counts(float(stats[0]), int(stats[1]), confusion.cpu())


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
            return value < self.best - self.spec.minDelta
        return value > self.best + self.spec.minDelta

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


__all__ = ["EarlyStopper", "all_reduce_sum", "evaluate", "evaluation_counts", "metrics_from_counts"]
