"""The random streams of a worker: one seed for what every rank must draw alike, and
streams of its own per rank for what each must draw differently.

- Before the model is built every rank seeds Python, NumPy and torch with
  `training.seed` itself (`seed_everything`), so a new head's initial weights are
  the same on every rank and the same run after run, and equal to what a plain
  transformers script gets after `set_seed(seed)`.
- Once the model is built each rank reseeds with a seed derived from (seed, rank)
  (`seed_rank_streams`). Without it every rank would continue the same stream and
  draw the same dropout masks: a mask's first n elements depend only on the
  generator state, so the two halves of a global batch were regularised by one
  mask instead of two independent ones.
- A rank's shuffle of its shard in an epoch comes from a generator of its own,
  seeded from (seed, rank, epoch) (`epoch_order`), a pure function so a resumed run
  sees the batches it would have seen.

Derived seeds are taken from a hash of their parts, not from sums: `seed + rank`
made seed 42's rank 1 draw exactly seed 43's rank 0 order.
"""

from __future__ import annotations

import hashlib
import random


def derived_seed(*parts: object) -> int:
    """A 63-bit seed that is a pure function of `parts` (an integer seed first, then
    what the stream is for)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators with `seed` itself."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_rank_streams(seed: int, rank: int) -> None:
    """Give this rank global streams (dropout, augmentation draws) of its own."""
    seed_everything(derived_seed(seed, "rank-streams", rank))


def epoch_order(num_examples: int, seed: int, epoch: int, rank: int = 0) -> list[int]:
    """Rank `rank`'s shuffled order of its `num_examples` rows in `epoch`: every row
    once, a pure function of (seed, rank, epoch)."""
    import torch

    generator = torch.Generator()
    generator.manual_seed(derived_seed(seed, "epoch-order", rank, epoch))
    return torch.randperm(num_examples, generator=generator).tolist()


__all__ = ["derived_seed", "epoch_order", "seed_everything", "seed_rank_streams"]
