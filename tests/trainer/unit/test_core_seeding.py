"""The random streams of a worker (finetune_trainer.loop.seeding): what every rank draws
alike (a new head's weights), what each rank draws on its own (dropout masks, its
shard's order), and that no two (seed, rank) pairs share an order.

The quality benchmark found our 2-worker runs spread much wider over seeds than a plain
transformers Trainer; these were the differences in the random draws behind it."""

from __future__ import annotations

from pathlib import Path

import pytest
from finetune_trainer.config import ModelSpec
from finetune_trainer.loop.seeding import epoch_order, seed_everything, seed_rank_streams
from finetune_trainer.tasks.text_classification import load_model_and_tokenizer

LABELS = ["a", "b", "c"]  # the tiny checkpoint has 2 labels: loading it for 3 builds a new head


def _new_head_model(path: Path, seed: int):
    seed_everything(seed)
    model, tokenizer = load_model_and_tokenizer(ModelSpec(source=str(path)), len(LABELS), LABELS, dropout=0.3)
    return model, tokenizer


def test_the_same_seed_builds_the_same_new_head_and_another_seed_another(tiny_model_path: Path) -> None:
    first, _ = _new_head_model(tiny_model_path, 42)
    again, _ = _new_head_model(tiny_model_path, 42)
    other, _ = _new_head_model(tiny_model_path, 43)
    import torch

    assert torch.equal(first.classifier.weight, again.classifier.weight)
    assert not torch.equal(first.classifier.weight, other.classifier.weight)
    # The pre-trained body is the checkpoint's whatever the seed.
    assert torch.equal(first.bert.embeddings.word_embeddings.weight, other.bert.embeddings.word_embeddings.weight)


def _train_mode_logits(path: Path, seed: int, rank: int):
    """Logits of one training-mode forward on `rank`, set up as the loop sets a worker up."""
    import torch

    model, tokenizer = _new_head_model(path, seed)
    seed_rank_streams(seed, rank)
    model.train()
    batch = tokenizer(["a great movie i loved it", "the worst film ever"] * 4, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_ranks_draw_different_dropout_masks_and_a_rank_the_same_run_after_run(tiny_model_path: Path) -> None:
    import torch

    rank0 = _train_mode_logits(tiny_model_path, 42, 0)
    rank1 = _train_mode_logits(tiny_model_path, 42, 1)
    assert not torch.allclose(rank0, rank1), "both ranks drew the same dropout masks"
    assert torch.equal(rank0, _train_mode_logits(tiny_model_path, 42, 0))


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_an_epoch_order_holds_every_row_once(size: int) -> None:
    for rank in (0, 1):
        for epoch in (0, 1):
            assert sorted(epoch_order(size, 42, epoch, rank=rank)) == list(range(size))


def test_epoch_orders_are_reproducible_and_differ_by_rank_epoch_and_seed() -> None:
    size = 1000
    base = epoch_order(size, 42, 0, rank=0)
    assert base == epoch_order(size, 42, 0, rank=0)
    assert base != epoch_order(size, 42, 0, rank=1)
    assert base != epoch_order(size, 42, 1, rank=0)
    # `seed + rank` made seed 42's rank 1 shuffle exactly seed 43's rank 0 one.
    assert epoch_order(size, 42, 0, rank=1) != epoch_order(size, 43, 0, rank=0)
    orders = {tuple(epoch_order(size, seed, epoch, rank=rank))
              for seed in (42, 43, 44) for rank in (0, 1) for epoch in (0, 1)}
    assert len(orders) == 12


class _TwoRanks:
    """The one collective `_plan` calls, answered for two ranks of the given sizes."""

    def __init__(self, sizes_in_batches: list[int]) -> None:
        self.others = sizes_in_batches

    def min_int(self, value: int) -> int:
        return min([value, *self.others])


@pytest.mark.parametrize("sizes", [(1009, 1008), (1000, 1000), (17, 16), (8, 7)])
def test_every_rank_trains_on_each_of_its_rows_once_per_epoch_in_as_many_batches_as_the_others(sizes) -> None:
    """Shards differ by up to a row after rebalancing; a shard of 16k+1 rows against one
    of 16k used to leave one row out of every epoch (all ranks take the smallest shard's
    number of batches)."""
    import math

    from finetune_trainer.config import TrainingSpec
    from finetune_trainer.loop.epoch import epoch_batches
    from finetune_trainer.train_loop import _plan

    training = TrainingSpec(batchSize=16, epochs=1)
    batch_counts = [math.ceil(size / training.batch_size) for size in sizes]
    counts = set()
    for rank, size in enumerate(sizes):
        plan = _plan(training, size, _TwoRanks(batch_counts))
        batches = epoch_batches(epoch_order(size, 42, 0, rank=rank), plan.batch_size, plan.batches_per_epoch)
        assert sorted(i for batch in batches for i in batch) == list(range(size))
        assert all(len(batch) == training.batch_size for batch in batches[:-1])
        counts.add(len(batches))
    assert len(counts) == 1
