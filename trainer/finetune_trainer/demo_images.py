"""The image demo: scikit-learn's 8x8 `digits` written out as an image folder, and a
small vision model to start from.

scikit-learn ships the digits (1,797 greyscale 8x8 images of the digits 0-9) inside
its package, so nothing is downloaded. They are written as PNG files in the layout
`image-classification` reads, `<split>/<digit>/<index>.png`, split per class with a
seeded shuffle (70/15/15 by default), the same files for the same seed.

No pre-trained vision model installs from PyPI as a plain `save_pretrained` folder
(the packages found fetch their weights from the internet at run time), so the demo
starts from a small randomly initialised one built from a config (`tiny_model`):
ViT by default, or ResNet, ConvNeXt or Swin, each saved with its image processor.

    python -m finetune_trainer.demo_images --out data/digits --model-out data/digits-vit
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Optional, Sequence

ARCHITECTURES = ("vit", "resnet", "convnext", "swin")


def write_digits(out: str | Path, *, seed: int = 0, fractions: tuple[float, float] = (0.15, 0.15),
                 limit: Optional[int] = None) -> dict[str, int]:
    """Write the digits as `<out>/{train,validation,test}/<digit>/<index>.png`; returns
    the image count per split. `fractions`: the validation and test shares of every
    class; `limit`: at most this many images per class (for quick tests)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = Path(out)
    counts = {"train": 0, "validation": 0, "test": 0}
    rng = random.Random(seed)
    for digit in range(10):
        indexes = [int(i) for i in np.flatnonzero(digits.target == digit)]
        rng.shuffle(indexes)
        if limit is not None:
            indexes = indexes[:limit]
        n_validation = max(1, round(len(indexes) * fractions[0]))
        n_test = max(1, round(len(indexes) * fractions[1]))
        parts = {"validation": indexes[:n_validation], "test": indexes[n_validation:n_validation + n_test],
                 "train": indexes[n_validation + n_test:]}
        for split, chosen in parts.items():
            folder = out / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for index in chosen:
                pixels = (digits.images[index] * (255.0 / 16.0)).round().astype(np.uint8)  # values 0-16
                Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}.png")
            counts[split] += len(chosen)
    return counts


def tiny_model(out: str | Path, architecture: str = "vit", *, image_size: int = 16, num_labels: int = 10,
               seed: int = 0) -> Path:
    """A small randomly initialised image classifier and its image processor, saved
    with `save_pretrained` to `out` (inputs `image_size` square, normalised to [-1, 1])."""
    import torch
    from transformers import (
        AutoModelForImageClassification, ConvNextConfig, ConvNextImageProcessor, ResNetConfig, SwinConfig,
        ViTConfig, ViTImageProcessor,
    )

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture {architecture!r}: allowed: {', '.join(ARCHITECTURES)}")
    labels = {"num_labels": num_labels}
    if architecture == "vit":
        config = ViTConfig(image_size=image_size, patch_size=4, hidden_size=64, num_hidden_layers=3,
                           num_attention_heads=4, intermediate_size=128, **labels)
    elif architecture == "resnet":
        config = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic",
                              downsample_in_first_stage=False, **labels)
    elif architecture == "convnext":
        config = ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, patch_size=2, **labels)
    else:
        config = SwinConfig(image_size=image_size, patch_size=2, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                            window_size=2, **labels)
    torch.manual_seed(seed)
    model = AutoModelForImageClassification.from_config(config)
    out = Path(out)
    model.save_pretrained(out)
    size = {"height": image_size, "width": image_size}
    if architecture == "convnext":
        processor = ConvNextImageProcessor(size={"shortest_edge": image_size}, crop_pct=1.0,
                                           image_mean=[0.5] * 3, image_std=[0.5] * 3)
    else:
        processor = ViTImageProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor.save_pretrained(out)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for train/, validation/ and test/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-out", help="also save a small random vision model here")
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="vit")
    args = parser.parse_args(argv)
    counts = write_digits(args.out, seed=args.seed)
    print(f"wrote {sum(counts.values())} digit images to {args.out}: "
          + ", ".join(f"{split} {n}" for split, n in counts.items()))
    if args.model_out:
        tiny_model(args.model_out, args.architecture, seed=args.seed)
        print(f"wrote a small random {args.architecture} image classifier to {args.model_out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
