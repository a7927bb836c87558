"""`data`: where the training, validation and test data live and how to read them."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from finetune_trainer.config.base import Rule, Spec

DataFormat = Literal["csv", "tsv", "jsonl", "parquet", "imagefolder"]


class AugmentationSpec(Spec):
    """Random text augmentation applied to training examples only."""

    word_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Probability of dropping each word of a training example."""

    word_swap: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Probability of swapping each word with its right neighbour."""

    RULES = (
        Rule("self.wordDropout > 0.0 || self.wordSwap > 0.0",
             "set wordDropout or wordSwap above 0, or leave augmentation out",
             lambda s: s.word_dropout > 0.0 or s.word_swap > 0.0),
    )


class DataSpec(Spec):
    """The labelled text data: where it lives and how to read it."""

    train: str = Field(min_length=1)
    """Training data: a local path, an `s3://` URI, or `hf://<dataset>[@<split>]` for
    a Hugging Face hub dataset."""

    validation: Optional[str] = None
    """Validation data, as `train`. When absent, `validationFraction` of the training
    data is split off."""

    test: Optional[str] = None
    """Test data, as `train`; scored once at the end with the best checkpoint."""

    format: Optional[DataFormat] = None
    """File format. Inferred from the file extension when absent (a folder of label
    folders of images is an `imagefolder`, for `model.task: image-classification` only)."""

    text_column: str = Field(default="text", min_length=1)
    """Column with the input text."""

    text_pair_column: Optional[str] = None
    """Optional second text column, for sentence-pair tasks."""

    label_column: str = Field(default="label", min_length=1)
    """Column with the label: a class name or an integer id."""

    validation_fraction: float = Field(default=0.1, gt=0.0, le=0.5)
    """Share of the training data held out for validation when no `validation` source
    is given."""

    max_seq_length: int = Field(default=128, ge=8, le=8192)
    """Token sequences are truncated to this length."""

    max_samples: Optional[int] = Field(default=None, ge=1)
    """Use at most this many training examples (after shuffling)."""

    shuffle_seed: int = Field(default=42, ge=0)
    """Seed for shuffling and for the validation split."""

    strict: bool = False
    """Fail on rows with a missing value and on duplicate training rows, instead of
    dropping them and reporting the counts."""

    augmentation: Optional[AugmentationSpec] = None
    """Optional random augmentation of training texts."""
