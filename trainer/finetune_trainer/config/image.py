"""`image`: how an image-classification job reads and augments its images.

Allowed only with `model.task: image-classification` (see `TrainingConfig`). Resizing
and normalisation are the model's own image processor's (`AutoImageProcessor` of
`model.source`); this block says where the images are in a table source, what to do
with an unreadable one, and which random augmentations the training split gets.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from finetune_trainer.config.base import Rule, Spec


class ImageAugmentationSpec(Spec):
    """Random augmentation of training images only (never at evaluation)."""

    random_resized_crop: bool = False
    """Crop a random part of each image (area share in `cropScale`, aspect ratio 3/4
    to 4/3) before the processor resizes it to the model's input size."""

    crop_scale: list[float] = Field(default_factory=lambda: [0.5, 1.0], min_length=2, max_length=2)
    """The [smallest, largest] share of the image area a random crop keeps (0 < min <= max <= 1)."""

    horizontal_flip: bool = False
    """Mirror each image left to right with probability 0.5."""

    color_jitter: float = Field(default=0.0, ge=0.0, le=1.0)
    """Strength of random brightness, contrast and saturation changes: each factor is
    drawn from [1 - colorJitter, 1 + colorJitter]; 0 turns it off."""

    RULES = (
        Rule("self.randomResizedCrop || self.horizontalFlip || self.colorJitter > 0.0",
             "set randomResizedCrop, horizontalFlip or colorJitter, or leave image.augmentation out",
             lambda s: s.random_resized_crop or s.horizontal_flip or s.color_jitter > 0.0),
        Rule("!has(self.cropScale) || (self.cropScale[0] > 0.0 && self.cropScale[0] <= self.cropScale[1]"
             " && self.cropScale[1] <= 1.0)",
             "cropScale must be [min, max] with 0 < min <= max <= 1",
             lambda s: 0.0 < s.crop_scale[0] <= s.crop_scale[1] <= 1.0,
             lambda s: f"got {s.crop_scale}"),
    )


class ImageSpec(Spec):
    """Image-classification data settings."""

    image_column: str = Field(default="image", min_length=1)
    """For csv/jsonl/parquet sources: the column with each image, as a path (relative
    to the table file's folder, absolute, or `s3://`) or as the encoded bytes (a
    binary parquet column, or a `{bytes, path}` struct as Hugging Face datasets write
    it). Image folders (`data.format: imagefolder`) have no columns: each image's
    label is the name of the folder it sits in."""

    skip_unreadable: bool = False
    """Drop images that cannot be read or decoded, and count them in metrics.json
    (`data.skipped_unreadable`), instead of failing with the file's name."""

    augmentation: Optional[ImageAugmentationSpec] = None
    """Optional random augmentation of training images."""


__all__ = ["ImageAugmentationSpec", "ImageSpec"]
