"""Image-classification data: image folders and image columns (paths and bytes, local
and s3://), unreadable images, the processor and augmentation, and the config rules."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import torch
from finetune_trainer.errors import DataError
from finetune_trainer.tasks import get_task
from image_helpers import image_config
from pydantic import ValidationError

from tests.support.s3 import s3_bucket, s3_store  # noqa: F401  (pytest fixtures)

TASK = get_task("image-classification")


def _png(value: int = 128, size: int = 8) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (size, size), value).save(buffer, format="PNG")
    return buffer.getvalue()


def _copy(digits: Path, tmp_path: Path, split: str = "train") -> Path:
    return Path(shutil.copytree(digits / split, tmp_path / split))


# ------------------------------------------------------------------ sources


def test_an_image_folder_takes_its_labels_from_the_folder_names(digits_dir, image_model_dir) -> None:
    config = image_config(image_model_dir(), digits_dir / "train", validation=digits_dir / "validation",
                          test=digits_dir / "test")
    examples = TASK.load_examples(config)
    assert examples.label_names == [str(d) for d in range(10)]
    assert (len(examples.train), len(examples.validation), len(examples.test)) == (60, 10, 10)
    assert examples.report.label_counts == {str(d): 6 for d in range(10)}
    # every image is labelled with the folder it sits in
    for ref, label in zip(examples.train.images, examples.train.labels):
        assert Path(ref).parent.name == examples.label_names[label]


def test_folder_labels_stay_names_even_when_they_look_like_ids(tmp_path, image_model_dir) -> None:
    for label in ("3", "7"):  # as ids, 3 and 7 would make 8 classes
        for i in range(3):
            (tmp_path / "train" / label).mkdir(parents=True, exist_ok=True)
            (tmp_path / "train" / label / f"{i}.png").write_bytes(_png(40 * i + int(label)))
    examples = TASK.load_examples(image_config(image_model_dir(), tmp_path / "train"))
    assert examples.label_names == ["3", "7"]


def test_images_outside_a_label_folder_are_refused(tmp_path, image_model_dir) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "1.png").write_bytes(_png())
    (tmp_path / "train" / "loose.png").write_bytes(_png())
    with pytest.raises(DataError, match=r"data.train: .*outside a label folder \(loose.png\)"):
        TASK.load_examples(image_config(image_model_dir(), tmp_path / "train", format="imagefolder"))


def test_a_csv_of_relative_image_paths_and_labels(digits_dir, tmp_path, image_model_dir) -> None:
    train = _copy(digits_dir, tmp_path)
    lines = ["file,digit"] + [f"{p.relative_to(tmp_path).as_posix()},{p.parent.name}"
                              for p in sorted(train.rglob("*.png"))]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    config = image_config(image_model_dir(), tmp_path / "train.csv", image={"imageColumn": "file"},
                          labelColumn="digit")
    examples = TASK.load_examples(config)
    assert len(examples.train) + len(examples.validation) == 60
    assert all(Path(ref).is_file() for ref in examples.train.images)


def test_a_parquet_column_of_image_bytes(tmp_path, image_model_dir) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [_png(10 * i) for i in range(12)]
    # the {bytes, path} struct Hugging Face datasets write, and plain binary
    pq.write_table(pa.table({"image": [{"bytes": b, "path": None} for b in images],
                             "label": ["cat", "dog"] * 6}), tmp_path / "train.parquet")
    pq.write_table(pa.table({"image": images[:4], "label": ["cat", "dog"] * 2}), tmp_path / "validation.parquet")
    config = image_config(image_model_dir(), tmp_path / "train.parquet", validation=tmp_path / "validation.parquet")
    examples = TASK.load_examples(config)
    assert examples.label_names == ["cat", "dog"]
    assert len(examples.train) == 12 and len(examples.validation) == 4
    assert set(examples.train.images) == set(images)


def test_a_missing_image_column_names_the_setting(tmp_path, image_model_dir) -> None:
    (tmp_path / "train.csv").write_text("path,label\na.png,x\n")
    with pytest.raises(DataError, match=r"column 'image' \(image.imageColumn\) not found; available columns: "
                                        r"'path', 'label'"):
        TASK.load_examples(image_config(image_model_dir(), tmp_path / "train.csv"))


def test_a_corrupt_image_fails_naming_the_file(digits_dir, tmp_path, image_model_dir) -> None:
    train = _copy(digits_dir, tmp_path)
    bad = train / "4" / "broken.png"
    bad.write_bytes(_png()[:30])  # a truncated PNG
    with pytest.raises(DataError, match=rf"data.train: cannot read image {bad}: .*image.skipUnreadable"):
        TASK.load_examples(image_config(image_model_dir(), train))


def test_unreadable_images_are_skipped_and_counted_when_asked(digits_dir, tmp_path, image_model_dir) -> None:
    train = _copy(digits_dir, tmp_path)
    (train / "4" / "broken.png").write_bytes(_png()[:30])
    (train / "5" / "text.jpg").write_bytes(b"not an image at all")
    examples = TASK.load_examples(image_config(image_model_dir(), train, image={"skipUnreadable": True}))
    assert examples.report.skipped_unreadable == 2
    assert len(examples.train) + len(examples.validation) == 60
    # over two ranks each skip is counted once, by the rank holding the image
    ranks = [TASK.load_examples(image_config(image_model_dir(), train, image={"skipUnreadable": True}),
                                rank=r, world_size=2) for r in (0, 1)]
    assert sum(e.report.skipped_unreadable for e in ranks) == 2


def test_an_image_folder_on_s3(digits_dir, s3_store, s3_bucket, image_model_dir) -> None:  # noqa: F811
    from finetune_trainer import storage
    from finetune_trainer.config import OutputSpec

    output = OutputSpec(uri=f"s3://{s3_bucket}/runs", endpoint=s3_store.endpoint, region=s3_store.region)
    for split in ("train", "validation"):
        for path in [p for digit in range(10) for p in sorted((digits_dir / split / str(digit)).glob("*.png"))[:2]]:
            storage.write_bytes(f"s3://{s3_bucket}/digits/{split}/{path.parent.name}/{path.name}",
                                path.read_bytes(), output)
    config = image_config(image_model_dir(), f"s3://{s3_bucket}/digits/train",
                          validation=f"s3://{s3_bucket}/digits/validation")
    config = config.model_copy(update={"output": output})
    examples = TASK.load_examples(config)
    assert len(examples.train) == 20 and len(examples.validation) == 10
    # the bytes were fetched once, while checking, and are kept for training
    assert all(isinstance(ref, bytes) for ref in examples.train.images)
    item = TASK.dataset(examples.train, _processor(image_model_dir()), config)[0]
    assert item["pixel_values"].shape == (3, 16, 16)


# ------------------------------------------------------- processor, augmentation


def _processor(model_dir: Path):
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(model_dir)


AUGMENT = {"augmentation": {"randomResizedCrop": True, "horizontalFlip": True, "colorJitter": 0.4}}


def test_evaluation_images_are_the_processors_output_and_never_augmented(digits_dir, image_model_dir) -> None:
    from PIL import Image

    config = image_config(image_model_dir(), digits_dir / "train", validation=digits_dir / "validation",
                          image=AUGMENT)
    examples = TASK.load_examples(config)
    processor = _processor(image_model_dir())
    validation = TASK.dataset(examples.validation, processor, config)
    expected = processor(images=Image.open(examples.validation.images[0]).convert("RGB"),
                         return_tensors="pt")["pixel_values"][0]
    for epoch in (0, 1):
        validation.set_epoch(epoch)
        assert torch.equal(validation[0]["pixel_values"], expected)
    # normalised by the processor: mean 0.5, std 0.5 maps [0, 255] to [-1, 1]
    assert expected.min() >= -1.0 and expected.max() <= 1.0 and expected.shape == (3, 16, 16)


def test_training_augmentation_is_seeded_per_epoch_and_image(digits_dir, image_model_dir) -> None:
    config = image_config(image_model_dir(), digits_dir / "train", image=AUGMENT)
    examples = TASK.load_examples(config)
    processor = _processor(image_model_dir())
    train = TASK.dataset(examples.train, processor, config, train=True)
    plain = TASK.dataset(examples.train, processor, config)
    first = [train[i]["pixel_values"] for i in range(8)]
    assert sum(not torch.equal(a, plain[i]["pixel_values"]) for i, a in enumerate(first)) >= 6
    again = TASK.dataset(examples.train, processor, config, train=True)
    assert all(torch.equal(a, again[i]["pixel_values"]) for i, a in enumerate(first))  # same seed, same images
    train.set_epoch(1)
    assert sum(not torch.equal(a, train[i]["pixel_values"]) for i, a in enumerate(first)) >= 6


def test_each_augmentation_does_what_it_says() -> None:
    from finetune_trainer.config import ImageAugmentationSpec
    from finetune_trainer.tasks.image_transforms import ImageAugmenter

    image = torch.arange(6 * 10 * 3, dtype=torch.uint8).reshape(6, 10, 3)
    flip = ImageAugmenter(ImageAugmentationSpec(horizontalFlip=True), seed=1)
    outcomes = [flip(image, epoch=0, index=i) for i in range(20)]
    assert all(torch.equal(o, image) or torch.equal(o, image.flip(1)) for o in outcomes)
    assert 3 < sum(torch.equal(o, image.flip(1)) for o in outcomes) < 17
    crop = ImageAugmenter(ImageAugmentationSpec(randomResizedCrop=True, cropScale=[0.3, 0.6]), seed=1)
    for i in range(10):
        out = crop(image, epoch=0, index=i)
        assert 0.3 * 60 - 6 <= out.shape[0] * out.shape[1] <= 0.6 * 60 + 6
        # a crop is a window of the original (every pixel of `image` is distinct)
        top, left = (int(v) for v in (image[..., 0] == out[0, 0, 0]).nonzero()[0])
        assert torch.equal(out, image[top:top + out.shape[0], left:left + out.shape[1]])
    jitter = ImageAugmenter(ImageAugmentationSpec(colorJitter=0.5), seed=1)
    out = jitter(image, epoch=0, index=0)
    assert out.shape == image.shape and out.dtype == torch.uint8 and not torch.equal(out, image)


# ------------------------------------------------------------ config rules


@pytest.mark.parametrize(("change", "message"), [
    ({"data": {"textPairColumn": "b"}}, "data.textPairColumn cannot be used with model.task image-classification"),
    ({"data": {"augmentation": {"wordDropout": 0.1}}}, "data.augmentation .* cannot be used with model.task "
                                                       "image-classification; use image.augmentation"),
    ({"model": {"task": "sequence-classification"}, "image": {"skipUnreadable": True}},
     "image: allowed only with model.task image-classification"),
    ({"model": {"task": "sequence-classification"}, "data": {"format": "imagefolder"}},
     "data.format imagefolder is allowed only with model.task image-classification"),
    ({"image": {"augmentation": {}}}, "set randomResizedCrop, horizontalFlip or colorJitter"),
    ({"image": {"augmentation": {"randomResizedCrop": True, "cropScale": [0.8, 0.2]}}},
     r"cropScale must be \[min, max\] with 0 < min <= max <= 1"),
])
def test_settings_that_cannot_work_with_the_task_are_refused(change: dict, message: str) -> None:
    from finetune_trainer.config import TrainingConfig

    document = {"model": {"source": "m", "task": "image-classification"}, "data": {"train": "t"},
                "output": {"uri": "o"}}
    for block, values in change.items():
        document[block] = {**document.get(block, {}), **values}
    with pytest.raises(ValidationError, match=message):
        TrainingConfig.model_validate(document)


# ------------------------------------------------------- preflight and demo data


def test_preflight_reads_image_folders_and_names_a_missing_one(digits_dir, tmp_path, image_model_dir) -> None:
    from finetune_trainer.preflight import check_data

    check_data(image_config(image_model_dir(), digits_dir / "train", validation=digits_dir / "validation"))
    with pytest.raises(DataError, match=rf"data.validation: {tmp_path / 'nowhere'} not found"):
        check_data(image_config(image_model_dir(), digits_dir / "train", validation=tmp_path / "nowhere"))


def test_the_digits_are_written_as_a_seeded_stratified_image_folder(tmp_path) -> None:
    import numpy as np
    from finetune_trainer.demo_images import write_digits
    from PIL import Image
    from sklearn.datasets import load_digits

    counts = write_digits(tmp_path / "a", limit=20)
    assert counts == {"train": 140, "validation": 30, "test": 30}
    for split, n in counts.items():
        assert {p.name for p in (tmp_path / "a" / split).iterdir()} == {str(d) for d in range(10)}
        assert len(list((tmp_path / "a" / split).rglob("*.png"))) == n
    write_digits(tmp_path / "b", limit=20)
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.png"))
    assert names == sorted(p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*.png"))
    # each PNG is its digit's 8x8 image, scaled from 0-16 to 0-255
    path = next((tmp_path / "a" / "test" / "7").glob("*.png"))
    digits = load_digits()
    index = int(path.stem)
    assert digits.target[index] == 7
    assert np.array_equal(np.asarray(Image.open(path)), (digits.images[index] * (255 / 16)).round().astype(np.uint8))


def test_finishing_reads_the_test_folder_alone(digits_dir, tmp_path, image_model_dir) -> None:
    import shutil

    from finetune_trainer.tasks import get_task

    for split in ("train", "validation", "test"):
        shutil.copytree(digits_dir / split, tmp_path / split)
    config = image_config(image_model_dir(), tmp_path / "train", validation=tmp_path / "validation",
                          test=tmp_path / "test", format="imagefolder")
    task = get_task(config)
    trained = task.load_examples(config, rank=0, world_size=1, shard_eval=False)
    shutil.rmtree(tmp_path / "train")
    shutil.rmtree(tmp_path / "validation")
    test = task.load_test(config, trained.label_names)
    assert test is not None and len(test) == len(trained.test) == 10
    assert sorted(test.labels) == sorted(trained.test.labels)
    assert task.load_test(config.model_copy(update={"data": config.data.model_copy(update={"test": None})}),
                          trained.label_names) is None
