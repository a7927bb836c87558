"""Even training shards across data-parallel ranks.

A row's rank is decided by a seeded hash of its row key (splitting.py), so every worker can
stream the sources and keep only its own rows. Hash shards are even only on average:
1,000 rows each for 2 ranks come out as roughly 980 and 1,020. Each rank takes the
same number of batches per epoch, so a larger shard's tail would be left out of every
epoch. `rebalance` moves that surplus: the ranks exchange their sizes, each rank over
its fair share hands its surplus rows (chosen by the seeded hash, so the choice is the
same on every run) to the ranks under it, and afterwards sizes differ by at most one.
Only the surplus travels, about the square root of the rows, never the whole data.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Protocol, Sequence, TypeVar


class Shard(Protocol):
    """A task's examples on one rank, as far as rebalancing needs them."""

    def __len__(self) -> int: ...

    def row_key(self, index: int) -> str:
        """The key the seeded split hash is taken of."""

    def subset(self, indexes: Sequence[int]) -> "Shard": ...

    def extend(self, more: "Shard") -> None: ...


ShardT = TypeVar("ShardT", bound=Shard)


def fair_sizes(sizes: Sequence[int]) -> list[int]:
    """Each rank's share of sum(sizes) rows: equal, the first ranks one more."""
    total, world = sum(sizes), len(sizes)
    return [total // world + (1 if rank < total % world else 0) for rank in range(world)]


def _surplus_order(examples: ShardT, seed: int) -> list[int]:
    """Indexes of this rank's rows, the ones to hand over first at the front."""
    def key(index: int) -> bytes:
        return hashlib.blake2b(f"{seed}\x01{examples.row_key(index)}".encode(), digest_size=8).digest()

    return sorted(range(len(examples)), key=key)


def rebalance(
    examples: ShardT,
    rank: int,
    seed: int,
    all_gather: Callable[[Any], list[Any]],
) -> ShardT:
    """This rank's training rows after evening out the shards.

    `all_gather(obj)` returns every rank's `obj` in rank order (for example
    torch.distributed.all_gather_object); it is called twice, by every rank alike."""
    sizes = [int(n) for n in all_gather(len(examples))]
    targets = fair_sizes(sizes)
    if sizes == targets:
        return examples
    give = max(0, sizes[rank] - targets[rank])
    order = _surplus_order(examples, seed)
    handed, kept = order[:give], sorted(order[give:])
    pool: list[ShardT] = all_gather(examples.subset(handed))
    # The handed-over rows in rank order; ranks under their share take consecutive runs.
    queue = [(source, index) for source, part in enumerate(pool) for index in range(len(part))]
    start = sum(max(0, targets[r] - sizes[r]) for r in range(rank))
    take = max(0, targets[rank] - sizes[rank])
    result = examples.subset(kept)
    for source, index in queue[start:start + take]:
        result.extend(pool[source].subset([index]))
    return result


__all__ = ["Shard", "fair_sizes", "rebalance"]
