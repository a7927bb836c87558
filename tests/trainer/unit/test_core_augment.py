"""Word dropout and swap augmentation (finetune_trainer.augment)."""

from __future__ import annotations

from finetune_trainer.augment import Augmenter
from finetune_trainer.config import AugmentationSpec

TEXT = "one two three four five six seven eight nine ten eleven twelve"


def test_seeded_and_varies_by_epoch_and_index() -> None:
    augment = Augmenter(AugmentationSpec(wordDropout=0.3, wordSwap=0.3), seed=1)
    first = augment(TEXT, epoch=0, index=5)
    assert first == Augmenter(AugmentationSpec(wordDropout=0.3, wordSwap=0.3), seed=1)(TEXT, epoch=0, index=5)
    assert first != TEXT
    outputs = {augment(TEXT, epoch=e, index=i) for e in range(3) for i in range(5)}
    assert len(outputs) > 10
    assert Augmenter(AugmentationSpec(wordDropout=0.3, wordSwap=0.3), seed=2)(TEXT, epoch=0, index=5) != first


def test_dropout_only_removes_words_in_order() -> None:
    augment = Augmenter(AugmentationSpec(wordDropout=0.5), seed=0)
    words = TEXT.split()
    for i in range(50):
        kept = augment(TEXT, epoch=0, index=i).split()
        assert 1 <= len(kept) <= len(words)
        positions = [words.index(w) for w in kept]
        assert positions == sorted(positions)
    rates = [1 - len(augment(TEXT, epoch=0, index=i).split()) / len(words) for i in range(400)]
    assert 0.4 < sum(rates) / len(rates) < 0.6


def test_swap_only_permutes_neighbours() -> None:
    augment = Augmenter(AugmentationSpec(wordSwap=0.4), seed=0)
    words = TEXT.split()
    for i in range(50):
        swapped = augment(TEXT, epoch=0, index=i).split()
        assert sorted(swapped) == sorted(words)
        assert all(abs(words.index(w) - j) <= 1 for j, w in enumerate(swapped))


def test_single_word_survives() -> None:
    assert Augmenter(AugmentationSpec(wordDropout=0.9), seed=0)("alone", epoch=0, index=0) == "alone"
