"""What every classification task shares: class names and confusion counts.

`LabelCoder` maps raw labels (class names or integer ids) to ids; `infer_label_names`
settles the class names from `model.labels` or the training data. Metrics are
computed from summed counts (loss sum, example count, confusion matrix), never from
per-rank averages, so a data-parallel evaluation gives exactly the single-process
result.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from finetune_trainer.config import ModelSpec
from finetune_trainer.errors import DataError

Reduce = Callable[[Any], Any]

CLASSIFICATION_METRICS = {
    "eval_loss": "Validation loss",
    "eval_accuracy": "Validation accuracy",
    "eval_f1": "Validation macro F1",
}


def as_id(value: Any) -> Optional[int]:
    """The value as a class id when it is one (int, integral float, digit string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


class LabelCoder:
    """Maps raw labels (class names or integer ids) to ids 0..n-1."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self._index = {name: i for i, name in enumerate(self.names)}

    def allowed(self) -> str:
        shown = ", ".join(repr(n) for n in self.names[:20]) + (" ..." if len(self.names) > 20 else "")
        return f"{shown} (or ids 0-{len(self.names) - 1})"

    def encode(self, value: Any, where: str) -> int:
        if isinstance(value, str) and value.strip() in self._index:
            return self._index[value.strip()]
        ident = as_id(value)
        if ident is not None and 0 <= ident < len(self.names):
            return ident
        raise DataError(f"{where}: unknown label {value!r}; allowed: {self.allowed()}")


def infer_label_names(model: ModelSpec, seen: Sequence[Any], where: str) -> list[str]:
    """Class names: `model.labels`, else the sorted names found, else ids 0..n-1."""
    if model.labels:
        return list(model.labels)
    names = sorted({v for v in seen if isinstance(v, str)})
    ids = [v for v in seen if isinstance(v, int)]
    if names and ids:
        raise DataError(
            f"{where}: column mixes class names ({', '.join(map(repr, names[:5]))}) and integer ids "
            f"({', '.join(map(str, sorted(ids)[:5]))}); use one kind, or list the names in model.labels"
        )
    if names:
        if model.num_labels is not None and len(names) != model.num_labels:
            raise DataError(
                f"{where}: found {len(names)} distinct labels ({', '.join(map(repr, names[:20]))}) but "
                f"model.numLabels is {model.num_labels}"
            )
        result = names
    else:
        count = model.num_labels or (max(ids) + 1 if ids else 0)
        result = [str(i) for i in range(count)]
    if len(result) < 2:
        raise DataError(
            f"{where}: found only {len(result)} label(s); a classifier needs at least 2 "
            f"(or list the classes in model.labels)"
        )
    return result


class LabelRules:
    """The label half of a classification task's `splitting.RowRules`.

    Before `fit` a label is checked against `known` (`model.labels`) or, failing that,
    as an integer id below `num_labels`; every distinct label seen is recorded, so
    that label inference is the same on every rank. After `fit` labels are checked
    against the settled class names (`coder`). A task adds `columns`, `clean`,
    `row_key` and `dedupe_key`, with the row's label under `values["label"]`.
    `names_only`: labels are class names even when they look like ids (folder names)."""

    def __init__(self, label_column: str, model: Optional[ModelSpec], *, names_only: bool = False) -> None:
        self.label_column, self.model, self.names_only = label_column, model, names_only
        self.known: Optional[LabelCoder] = LabelCoder(model.labels) if model and model.labels else None
        self.num_labels: Optional[int] = model.num_classes if model else None
        self.seen: dict[Any, None] = {}
        self.coder: Optional[LabelCoder] = None
        self.train_where = "data.train"

    def check(self, values: dict[str, Any], where: str, row_number: int) -> None:
        label = values["label"]
        cell = f"{where}: row {row_number}, column {self.label_column!r}"
        if self.known is not None:
            self.known.encode(label, cell)  # fails on every rank alike
        elif self.names_only:
            self.seen.setdefault(str(label), None)
            return
        else:
            ident = as_id(label)
            if isinstance(label, (float, bool)) and ident is None or isinstance(label, (list, dict, bytes)):
                raise DataError(f"{cell}: label {label!r} is neither a class name nor an integer id")
            num_labels = self.num_labels
            if ident is not None and (ident < 0 or (num_labels is not None and ident >= num_labels)):
                upper = f"0-{num_labels - 1}" if num_labels else "0 or more"
                raise DataError(f"{cell}: label id {ident} is out of range (allowed: {upper})")
        self.seen.setdefault(label if as_id(label) is None else as_id(label), None)

    def fit(self, where: str) -> None:
        assert self.model is not None
        self.train_where = where
        names = infer_label_names(self.model, list(self.seen), f"{where}, column {self.label_column!r}")
        self.coder = LabelCoder(names)
        self.known, self.num_labels = self.coder, len(names)


# ---------------------------------------------------------------- evaluation


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


__all__ = [
    "CLASSIFICATION_METRICS",
    "LabelCoder",
    "LabelRules",
    "as_id",
    "evaluate",
    "evaluation_counts",
    "infer_label_names",
    "metrics_from_counts",
]
