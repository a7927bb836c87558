"""Training shards are evened out across ranks: nothing lost, nothing doubled, sizes
within one row, and the same result on every run."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter

import pytest

from core_helpers import training_config
from finetune_trainer.tasks.text_classification import Examples, load_examples
from finetune_trainer.sharding import fair_sizes, rebalance


class ThreadGather:
    """all_gather across ranks played by threads: each call blocks until every rank
    has contributed, then returns all contributions in rank order."""

    def __init__(self, world: int) -> None:
        self.slots: list = [None] * world
        self.barrier = threading.Barrier(world, timeout=30)

    def for_rank(self, rank: int):
        def gather(value):
            self.slots[rank] = value
            self.barrier.wait()
            out = list(self.slots)
            self.barrier.wait()  # nobody overwrites a slot before all have read it
            return out
        return gather


def run_ranks(shards: list[Examples], seed: int = 42) -> list[Examples]:
    gather = ThreadGather(len(shards))
    results: list = [None] * len(shards)
    errors: list = []

    def work(rank: int) -> None:
        try:
            results[rank] = rebalance(shards[rank], rank, seed, gather.for_rank(rank))
        except BaseException as err:  # surfaced below, not swallowed
            errors.append(err)
            gather.barrier.abort()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(len(shards))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def shard(start: int, count: int, pairs: bool = False) -> Examples:
    ids = range(start, start + count)
    return Examples(texts=[f"row {i}" for i in ids], pairs=[f"pair {i}" for i in ids] if pairs else None,
                    labels=[i % 3 for i in ids], rows=list(ids))


def triples(examples: Examples) -> list[tuple]:
    pairs = examples.pairs if examples.pairs is not None else [None] * len(examples)
    return list(zip(examples.texts, pairs, examples.labels, examples.rows))


def test_fair_sizes_keep_the_total_and_differ_by_at_most_one():
    assert fair_sizes([982, 1018]) == [1000, 1000]
    assert fair_sizes([10, 0, 1]) == [4, 4, 3]
    assert fair_sizes([5, 5]) == [5, 5]


@pytest.mark.parametrize("sizes", [[982, 1018], [7, 0, 30], [1, 2, 3, 50], [13, 12]])
@pytest.mark.parametrize("pairs", [False, True])
def test_rebalanced_shards_lose_and_double_nothing(sizes, pairs):
    shards, start = [], 0
    for size in sizes:
        shards.append(shard(start, size, pairs))
        start += size
    before = Counter(t for s in shards for t in triples(s))
    after_shards = run_ranks(shards)
    after = Counter(t for s in after_shards for t in triples(s))
    assert after == before
    lengths = [len(s) for s in after_shards]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == fair_sizes(sizes)
    for result in after_shards:  # every field stays aligned row by row
        assert len(result.labels) == len(result.rows) == len(result.texts)
        assert all(text == f"row {row}" and label == row % 3
                   for text, label, row in zip(result.texts, result.labels, result.rows))


def test_only_the_surplus_moves_and_the_choice_is_the_same_every_run():
    shards = [shard(0, 40), shard(40, 60)]
    first = run_ranks([shard(0, 40), shard(40, 60)])
    second = run_ranks(shards)
    assert [triples(s) for s in first] == [triples(s) for s in second]
    # Rank 0 kept all its own rows and took exactly 10 of rank 1's.
    assert set(range(40)) <= set(first[0].rows) and len(set(first[0].rows) - set(range(40))) == 10
    assert set(first[1].rows) <= set(range(40, 100))


def test_even_shards_are_left_as_they_are():
    shards = [shard(0, 5), shard(5, 5)]
    results = run_ranks(shards)
    assert results[0] is shards[0] and results[1] is shards[1]


def test_hash_shards_of_real_rows_come_out_uneven_and_rebalance_to_even(tmp_path):
    """The case the module exists for: 2,000 rows hash-sharded over 2 ranks."""
    rng = random.Random(3)
    data = tmp_path / "train.jsonl"
    with open(data, "w") as handle:
        for i in range(2000):
            handle.write(json.dumps({"text": f"message {i} {rng.random():.6f}", "label": i % 2}) + "\n")
    validation = tmp_path / "validation.jsonl"
    validation.write_text("".join(json.dumps({"text": f"held out {i}", "label": i % 2}) + "\n" for i in range(4)))
    config = training_config(str(data), str(tmp_path / "out"), data={"validation": str(validation)})
    loaded = [load_examples(config, rank=r, world_size=2).train for r in range(2)]
    sizes = [len(s) for s in loaded]
    assert sum(sizes) == 2000 and sizes[0] != sizes[1]
    results = run_ranks(loaded, seed=config.data.shuffle_seed)
    assert [len(s) for s in results] == [1000, 1000]
    assert sorted(r for s in results for r in s.rows) == sorted(r for s in loaded for r in s.rows)
