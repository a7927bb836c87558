"""Fixtures of the image-classification tests: the digits as a small image folder and
tiny random vision models (no pre-trained vision model installs from PyPI as a
`save_pretrained` folder, so every model here is built from a config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

ARCHITECTURES = ("vit", "resnet", "convnext", "swin")


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits, 8 images per class: train 60 / validation 10 / test 10."""
    from finetune_trainer.demo_images import write_digits

    out = tmp_path_factory.mktemp("digits")
    write_digits(out, limit=8, fractions=(0.125, 0.125))
    return out


@pytest.fixture(scope="session")
def image_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """`image_model_dir(architecture)`: the folder of a tiny random model and processor."""
    from finetune_trainer.demo_images import tiny_model

    made: dict[str, Path] = {}

    def make(architecture: str = "vit") -> Path:
        if architecture not in made:
            made[architecture] = tiny_model(tmp_path_factory.mktemp(f"tiny-{architecture}"), architecture)
        return made[architecture]

    return make


def image_config(model: Path, train: Any, *, validation: Any = None, test: Any = None,
                 image: Optional[dict] = None, strategy: Optional[dict] = None, training: Optional[dict] = None,
                 out: Optional[Path] = None, **data: Any):
    from finetune_trainer.config import TrainingConfig

    document: dict[str, Any] = {
        "model": {"source": str(model), "task": "image-classification"},
        "data": {"train": str(train), **data},
        "output": {"uri": str(out or Path(model).parent / "out")},
    }
    for key, value in (("validation", validation), ("test", test)):
        if value is not None:
            document["data"][key] = str(value)
    for key, value in (("image", image), ("strategy", strategy), ("training", training)):
        if value is not None:
            document[key] = value
    return TrainingConfig.model_validate(document)
