"""The task seam: the registry, and the shared modules asking the task rather than
assuming text classification (finetune_trainer.tasks, splitting, strategies,
evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from core_helpers import training_config, write_rows
from finetune_trainer import splitting
from finetune_trainer.config import StrategySpec
from finetune_trainer.errors import DataError, TrainerError
from finetune_trainer.evaluation import evaluate
from finetune_trainer.strategies import apply_strategy
from finetune_trainer.tasks import TASKS, get_task
from finetune_trainer.tasks.text_classification import TextClassification


def test_get_task_follows_model_task_and_names_the_allowed_ones(tmp_path: Path) -> None:
    config = training_config(str(tmp_path / "t.csv"), str(tmp_path / "out"))
    assert get_task(config) is TASKS[config.model.task]
    assert get_task(config.model) is get_task() is TASKS["sequence-classification"]
    with pytest.raises(TrainerError, match=r"model.task: unknown task 'no-such-task'; "
                                           r"allowed: causal-lm, image-classification, sequence-classification"):
        get_task("no-such-task")


class _Pairs:
    """RowRules of a made-up task: rows of (a, b), duplicates by `a` alone."""

    duplicate_means = "same a"

    def __init__(self) -> None:
        self.fitted = False
        self.checked = 0

    def columns(self, spec) -> dict[str, str]:
        return {"a": "data.a", "b": "data.b"}

    def clean(self, record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        return dict(record), [c for c in ("a", "b") if record[c] is None]

    def check(self, values: dict[str, Any], where: str, row_number: int) -> None:
        self.checked += 1
        if values["b"] == "bad":
            raise DataError(f"{where}: row {row_number}: b is bad")

    def fit(self, where: str) -> None:
        self.fitted = True

    def row_key(self, values: dict[str, Any]) -> str:
        return values["a"]

    def dedupe_key(self, values: dict[str, Any]) -> Any:
        assert self.fitted, "dedupe before fit"
        return values["a"]


def test_the_splitter_knows_no_task_only_its_rules(tmp_path: Path) -> None:
    rows = [{"a": f"x{i % 40}", "b": str(i)} for i in range(60)] + [{"a": "y", "b": None}]
    train = write_rows(tmp_path / "t.csv", rows)
    config = training_config(str(train), str(tmp_path / "out"), data={"validationFraction": 0.25})
    rules = _Pairs()
    split = splitting.split_rows(config, rules, rank=0, world_size=1)
    assert rules.fitted and rules.checked == 60
    assert split.report.dropped_missing == 1
    # Duplicates by the task's key: 20 `a` values repeat; the split hashes `a`, so a
    # repeat always lands on the side of its first.
    kept = [r.values["a"] for r in split.train]
    assert len(kept) == len(set(kept))
    assert not set(kept) & {r.values["a"] for r in split.validation}
    assert split.report.dropped_duplicates + len(kept) == sum(
        1 for r in rows[:60] if not splitting.is_validation(splitting.row_hash(config.data.shuffle_seed, r["a"]),
                                                           0.25))
    shards = [splitting.split_rows(config, _Pairs(), rank=r, world_size=2).train for r in range(2)]
    assert sorted(r.values["a"] for s in shards for r in s) == sorted(kept)

    bad = write_rows(tmp_path / "bad.csv", [{"a": "x", "b": "ok"}, {"a": "z", "b": "bad"}])
    with pytest.raises(DataError, match=r"data.train \(.*bad\.csv\): row 2: b is bad"):
        splitting.split_rows(training_config(str(bad), str(tmp_path / "out")), _Pairs())
    missing = write_rows(tmp_path / "m.csv", [{"a": "x", "c": "ok"}])
    with pytest.raises(DataError, match=r"column 'b' \(data.b\) not found; available columns: 'a', 'c'"):
        splitting.split_rows(training_config(str(missing), str(tmp_path / "out")), _Pairs())


class _PoolerInHead(TextClassification):
    """Text classification whose head, as strategies are told, includes the pooler."""

    def head_modules(self, model: Any) -> list[str]:
        return [*super().head_modules(model), "bert.pooler"]


def _tiny_model(tiny_model_path: Path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(tiny_model_path)


def test_lora_saves_the_modules_the_task_names_as_its_head(tiny_model_path: Path) -> None:
    spec = StrategySpec.model_validate({"type": "lora", "lora": {"r": 2, "alpha": 4}})
    default = apply_strategy(_tiny_model(tiny_model_path), spec).trainable_parameters()
    asked = apply_strategy(_tiny_model(tiny_model_path), spec, _PoolerInHead()).trainable_parameters()
    saved = {n for n in asked if "modules_to_save" in n}
    assert any("classifier" in n for n in saved) and any("pooler" in n for n in saved)
    assert not any("pooler" in n for n in default)
    assert set(default) < set(asked)


class _CountingTask(TextClassification):
    """Counts batches and rows, to show evaluation takes what the task counts."""

    def evaluation_counts(self, model: Any, dataloader: Any, device: Any, label_names) -> tuple:
        counts = torch.zeros(2, dtype=torch.float64)
        for batch in dataloader:
            counts += torch.tensor([1.0, float(len(batch["labels"]))], dtype=torch.float64)
        return (counts,)

    def metrics_from_counts(self, counts: tuple) -> dict[str, float]:
        (total,) = counts
        return {"eval_batches": float(total[0]), "eval_rows": float(total[1])}


def test_evaluate_sums_the_tasks_counts_across_ranks() -> None:
    shards = [[{"labels": torch.tensor([0, 1, 1])}, {"labels": torch.tensor([1])}], [{"labels": torch.tensor([0])}]]
    every = [c for shard in shards for c in _CountingTask().evaluation_counts(None, shard, "cpu", [])]

    def reduce(tensor):  # both ranks' counts, as an all-reduce would give them
        return every[0] + every[1]

    assert evaluate(None, shards[0], task=_CountingTask(), label_names=[]) == {"eval_batches": 2.0, "eval_rows": 4.0}
    assert evaluate(None, shards[0], reduce=reduce, task=_CountingTask(), label_names=[]) == {
        "eval_batches": 3.0, "eval_rows": 5.0}
