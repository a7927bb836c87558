"""Random word-level augmentation of training texts.

Each example's noise is seeded by (seed, epoch, example index), so a run is exactly
reproducible, every epoch sees fresh noise, and no state is shared between workers.
Only the training split is augmented; validation and test texts are never touched.
"""

from __future__ import annotations

import hashlib
import random

from finetune_trainer.config import AugmentationSpec


def _rng(seed: int, epoch: int, index: int) -> random.Random:
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def word_dropout(words: list[str], probability: float, rng: random.Random) -> list[str]:
    """`words` with each dropped with `probability`; at least one word is kept."""
    if probability <= 0 or len(words) <= 1:
        return list(words)
    kept = [w for w in words if rng.random() >= probability]
    return kept or [words[rng.randrange(len(words))]]


def word_swap(words: list[str], probability: float, rng: random.Random) -> list[str]:
    """`words` with each word swapped with its right neighbour with `probability`
    (a swapped pair is not swapped again)."""
    out = list(words)
    i = 0
    while i < len(out) - 1:
        if rng.random() < probability:
            out[i], out[i + 1] = out[i + 1], out[i]
            i += 2
        else:
            i += 1
    return out


class Augmenter:
    """Applies an AugmentationSpec to one text at a time, deterministically."""

    def __init__(self, spec: AugmentationSpec, seed: int) -> None:
        self.spec = spec
        self.seed = seed

    def __call__(self, text: str, *, epoch: int, index: int) -> str:
        rng = _rng(self.seed, epoch, index)
        words = text.split()
        if not words:
            return text
        words = word_dropout(words, self.spec.word_dropout, rng)
        words = word_swap(words, self.spec.word_swap, rng)
        return " ".join(words)


__all__ = ["Augmenter", "word_dropout", "word_swap"]
