"""Image classification tensors: augmentation, the model's image processor, batches.

Resizing and normalising are the model's own image processor's (`AutoImageProcessor`),
so a fine-tuned model sees its inputs prepared exactly as at pre-training and as any
`transformers` pipeline will prepare them after export. Augmentation runs before the
processor, on the training split only, with plain torch ops (torchvision is not a
dependency): a random resized crop (the processor then resizes it), a horizontal
flip, and brightness/contrast/saturation jitter. Each image's randomness is seeded by
(seed, epoch, row), so a run and a resumed run see the same augmented images, every
epoch sees fresh ones, and workers share no state.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Optional

from finetune_trainer.config import ImageAugmentationSpec, OutputSpec
from finetune_trainer.tasks.image_data import Examples, decode, read_image_bytes


def _generator(seed: int, epoch: int, index: int):
    import torch

    digest = hashlib.blake2b(f"image:{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "big") >> 1)


def _uniform(generator, low: float, high: float) -> float:
    import torch

    return low + (high - low) * float(torch.rand((), generator=generator))


class ImageAugmenter:
    """Random crop, flip and colour jitter of one HWC uint8 image tensor."""

    def __init__(self, spec: ImageAugmentationSpec, seed: int) -> None:
        self.spec, self.seed = spec, seed

    def crop_box(self, height: int, width: int, generator) -> tuple[int, int, int, int]:
        """(top, left, height, width) of a random crop: area share in `cropScale`,
        aspect ratio in [3/4, 4/3] (ten tries, else the whole image)."""
        low, high = self.spec.crop_scale
        area = height * width
        for _ in range(10):
            target = area * _uniform(generator, low, high)
            ratio = math.exp(_uniform(generator, math.log(3 / 4), math.log(4 / 3)))
            w = int(round(math.sqrt(target * ratio)))
            h = int(round(math.sqrt(target / ratio)))
            if 0 < w <= width and 0 < h <= height:
                top = int(_uniform(generator, 0, height - h + 1 - 1e-9))
                left = int(_uniform(generator, 0, width - w + 1 - 1e-9))
                return top, left, h, w
        return 0, 0, height, width

    def __call__(self, image, *, epoch: int, index: int):
        import torch

        generator = _generator(self.seed, epoch, index)
        spec = self.spec
        if spec.random_resized_crop:
            top, left, h, w = self.crop_box(image.shape[0], image.shape[1], generator)
            image = image[top:top + h, left:left + w]
        if spec.horizontal_flip and float(torch.rand((), generator=generator)) < 0.5:
            image = image.flip(1)
        if spec.color_jitter > 0:
            image = self.jitter(image, generator)
        return image.contiguous()

    def jitter(self, image, generator):
        """Brightness, contrast and saturation, each scaled by a factor drawn from
        [1 - colorJitter, 1 + colorJitter], in that order."""
        strength = self.spec.color_jitter
        pixels = image.float()
        factors = [_uniform(generator, 1 - strength, 1 + strength) for _ in range(3)]
        pixels = pixels * factors[0]
        gray = (pixels * pixels.new_tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)
        pixels = gray.mean() + (pixels - gray.mean()) * factors[1]
        gray = (pixels * pixels.new_tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)
        pixels = gray + (pixels - gray) * factors[2]
        return pixels.clamp(0, 255).round().to(image.dtype)


def rgb_tensor(data: bytes):
    """An HWC uint8 RGB tensor of encoded image bytes."""
    import numpy as np
    import torch

    return torch.from_numpy(np.array(decode(data).convert("RGB"), dtype=np.uint8))


class ImageClassificationDataset:
    """A map-style torch Dataset that decodes, augments (training only) and prepares
    one image at a time with the model's image processor."""

    def __init__(self, examples: Examples, processor: Any, augmenter: Optional[ImageAugmenter] = None,
                 output: Optional[OutputSpec] = None) -> None:
        self.examples, self.processor, self.augmenter, self.output = examples, processor, augmenter, output
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.examples)

    def image_at(self, index: int):
        """The image (HWC uint8 tensor) the processor gets: augmented in training."""
        image = rgb_tensor(read_image_bytes(self.examples.images[index], self.output))
        if self.augmenter is not None:
            image = self.augmenter(image, epoch=self.epoch, index=self.examples.rows[index])
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        pixels = self.processor(images=self.image_at(index).numpy(), input_data_format="channels_last",
                                return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels[0], "labels": self.examples.labels[index]}


class ImageCollator:
    """Stacks dataset items into a batch of `pixel_values` and `labels` tensors."""

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        return {"pixel_values": torch.stack([item["pixel_values"] for item in items]),
                "labels": torch.tensor([int(item["labels"]) for item in items], dtype=torch.long)}


__all__ = ["ImageAugmenter", "ImageClassificationDataset", "ImageCollator", "rgb_tensor"]
