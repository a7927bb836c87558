"""Evaluation metrics, their aggregation across shards, and early stopping."""

from __future__ import annotations

import math

import pytest
import torch
from finetune_trainer.config import EarlyStoppingSpec
from finetune_trainer.evaluation import EarlyStopper
from finetune_trainer.tasks.text_classification import evaluate, evaluation_counts, metrics_from_counts
from sklearn.metrics import accuracy_score, f1_score


def test_metrics_from_counts_match_sklearn() -> None:
    rng = torch.Generator().manual_seed(3)
    truth = torch.randint(0, 4, (200,), generator=rng)
    predicted = torch.where(
        torch.rand(200, generator=rng) < 0.6, truth, torch.randint(0, 3, (200,), generator=rng)
    )
    confusion = torch.zeros(4, 4)
    for t, p in zip(truth.tolist(), predicted.tolist()):
        confusion[t, p] += 1
    metrics = metrics_from_counts(50.0, 200, confusion)
    assert metrics["eval_loss"] == 0.25
    assert metrics["eval_accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert metrics["eval_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_no_examples_gives_nan_not_a_crash() -> None:
    metrics = metrics_from_counts(0.0, 0, torch.zeros(2, 2))
    assert all(math.isnan(v) for v in metrics.values())


def _loaders(path, tokenizer):
    from finetune_trainer.tasks.text_classification import make_collator
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path)
    texts = [f"the movie was {w} {i}" for i, w in enumerate(["great", "bad", "fun", "awful", "boring"] * 5)]
    items = [dict(tokenizer(t), labels=i % 2) for i, t in enumerate(texts)]
    collate = make_collator(tokenizer)
    whole = torch.utils.data.DataLoader(items, batch_size=4, collate_fn=collate)
    shards = [torch.utils.data.DataLoader(items[r::2], batch_size=3, collate_fn=collate) for r in range(2)]
    return model, items, whole, shards


def test_evaluate_matches_sklearn_and_restores_train_mode(tiny_model_path, tiny_tokenizer) -> None:
    model, items, whole, _ = _loaders(tiny_model_path, tiny_tokenizer)
    model.train()
    metrics = evaluate(model, whole)
    assert model.training
    model.eval()
    with torch.no_grad():
        batch = next(
            iter(torch.utils.data.DataLoader(items, batch_size=len(items), collate_fn=whole.collate_fn))
        )
        out = model(**batch)
    predictions = out.logits.argmax(-1)
    assert metrics["eval_loss"] == pytest.approx(float(out.loss), rel=1e-5)
    assert metrics["eval_accuracy"] == pytest.approx(accuracy_score(batch["labels"], predictions))
    assert metrics["eval_f1"] == pytest.approx(f1_score(batch["labels"], predictions, average="macro"))


def test_sharded_evaluation_with_reduce_equals_whole(tiny_model_path, tiny_tokenizer) -> None:
    model, _, whole, shards = _loaders(tiny_model_path, tiny_tokenizer)
    expected = evaluate(model, whole)
    other_counts = evaluation_counts(model, shards[1])
    pending = list(other_counts)

    def reduce(tensor):  # what all_reduce(SUM) does on rank 0 of 2
        return tensor + pending.pop(0)

    sharded = evaluate(model, shards[0], reduce=reduce)
    assert sharded == pytest.approx(expected, rel=1e-6)
    assert evaluate(model, shards[0]) != pytest.approx(expected, rel=1e-6)


def test_early_stopper_min_with_patience_and_min_delta() -> None:
    stopper = EarlyStopper(EarlyStoppingSpec(metric="eval_loss", mode="min", patience=2, minDelta=0.1))
    assert stopper.update({"eval_loss": 1.0}) is False
    assert stopper.update({"eval_loss": 0.95}) is False  # not better by minDelta
    assert stopper.update({"eval_loss": 0.8}) is False  # better: counter resets
    assert stopper.best == 0.8
    assert stopper.update({"eval_loss": 0.75}) is False
    assert stopper.update({"eval_loss": 0.9}) is True


def test_early_stopper_max_and_state_round_trip() -> None:
    stopper = EarlyStopper(EarlyStoppingSpec(metric="eval_accuracy", mode="max", patience=1))
    assert stopper.update({"eval_accuracy": 0.5}) is False
    restored = EarlyStopper(EarlyStoppingSpec(metric="eval_accuracy", mode="max", patience=1))
    restored.load_state_dict(stopper.state_dict())
    assert restored.update({"eval_accuracy": 0.6}) is False
    assert restored.update({"eval_accuracy": 0.6}) is True
    with pytest.raises(KeyError, match="eval_accuracy.*eval_loss"):
        restored.update({"eval_loss": 1.0})


def _distributed_worker(rank: int, world_size: int, address: str, model_path: str, result_dir: str) -> None:
    """One rank of a real gloo process group evaluating its shard."""
    import json

    import torch.distributed as dist
    from finetune_trainer.evaluation import all_reduce_sum
    from transformers import AutoTokenizer

    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world_size)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model, _, _, shards = _loaders(model_path, tokenizer)
        metrics = evaluate(model, shards[rank], reduce=all_reduce_sum)
        with open(f"{result_dir}/rank-{rank}.json", "w") as handle:
            json.dump(metrics, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawns two Python processes that import torch and transformers
def test_all_reduce_over_a_real_process_group_equals_whole(tiny_model_path, tiny_tokenizer, tmp_path) -> None:
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(
        _distributed_worker,
        args=(2, f"tcp://127.0.0.1:{port}", str(tiny_model_path), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    model, _, whole, _ = _loaders(tiny_model_path, tiny_tokenizer)
    expected = evaluate(model, whole)
    for rank in range(2):
        assert json.loads((tmp_path / f"rank-{rank}.json").read_text()) == pytest.approx(expected, rel=1e-6)
