"""Image classification data: where the images are, what a row means, which are readable.

Two source shapes, local or `s3://`:

- an image folder (`data.format: imagefolder`, or a folder holding images and no
  table files): `<source>/<label>/<name>.png|jpg|...`, the label being the name of
  the folder an image sits in (deeper folders count toward their top label folder);
- a table (csv, tsv, jsonl, parquet; read by `sources`) with an image column
  (`image.imageColumn`: a path, relative to the table file's folder or absolute or
  `s3://`, or the encoded bytes) and a label column (`data.labelColumn`).

The seeded split, shard and dedupe are `splitting`'s; this module gives it the rows
(`read_rows`) and the rules for them (`ImageRows`). After the split every rank opens
and decodes the images it keeps: an unreadable one fails with its file name, or, with
`image.skipUnreadable`, is dropped and counted (`DataReport.skipped_unreadable`).
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterator, Optional, Sequence, Union

from finetune_trainer import sources, splitting, storage
from finetune_trainer.config import DataSpec, ImageSpec, OutputSpec, TrainingConfig
from finetune_trainer.errors import DataError, StorageError
from finetune_trainer.sources import Columns
from finetune_trainer.splitting import DataReport, Row
from finetune_trainer.tasks._labels import LabelCoder, LabelRules
from finetune_trainer.tasks.base import SplitExamples

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq")

ImageRef = Union[str, bytes]
"""An image: its URI (local path or s3://) or its encoded bytes."""


def image_spec(config: TrainingConfig) -> ImageSpec:
    return config.image or ImageSpec()


def required_columns(data: DataSpec, image: ImageSpec) -> Columns:
    """The columns a table source must have, each with the setting naming it."""
    return {image.image_column: "image.imageColumn", data.label_column: "data.labelColumn"}


def _is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith((".", "_")) and base.lower().endswith(IMAGE_EXTENSIONS)


def folder_images(source: str, spec: DataSpec, field_name: str, output: Optional[OutputSpec]
                  ) -> Optional[list[str]]:
    """The images (paths relative to `source`) of an image-folder source, or None
    when `source` is a table (a file, or a folder of table files)."""
    lowered = source.lower().rstrip("/")
    if spec.format not in (None, "imagefolder") or (spec.format is None and lowered.endswith(_TABLE_EXTENSIONS)):
        return None
    from pyarrow import fs as pafs

    try:
        filesystem, path = storage.resolve_filesystem(source, output)
        info = storage.with_retries(lambda: filesystem.get_file_info(path), f"checking {source}",
                                    attempts=3, backoff=0.2)
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"{field_name}: {source} not found")
        if info.type != pafs.FileType.Directory:
            if spec.format == "imagefolder":
                raise DataError(f"{field_name}: {source} is a file, but data.format imagefolder needs a folder "
                                f"of label folders (<label>/<image>)")
            return None
        names = storage.list_files(source, output)
    except StorageError as err:
        raise DataError(f"{field_name}: cannot read {source}: {err}") from err
    images = [n for n in names if _is_image(n)]
    tables = [n for n in names if n.lower().endswith(_TABLE_EXTENSIONS)]
    if spec.format is None and (tables or not images):
        return None  # a folder of table part files: `sources` reads it
    if not images:
        raise DataError(f"{field_name}: image folder {source} holds no images "
                        f"({', '.join(IMAGE_EXTENSIONS)}) in label folders")
    loose = [n for n in images if "/" not in n]
    if loose:
        raise DataError(
            f"{field_name}: image folder {source} has images outside a label folder ({', '.join(loose[:3])}); "
            f"put each image in a folder named after its label: {source}/<label>/{loose[0]}"
        )
    return images


def _resolve(value: Any, table_file: str) -> Any:
    """An image cell as an ImageRef: bytes as they are, a `{bytes, path}` struct by
    its bytes (else its path), a relative path against the table file's folder."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value) or None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        if storage.is_s3(value) or value.startswith(("/", "file://")):
            return value
        folder = posixpath.dirname(table_file) if storage.is_s3(table_file) else _local_dir(table_file)
        return storage.join(folder, value) if storage.is_s3(folder) else posixpath.join(folder, value)
    return value  # anything else: `ImageRows.check` names it


def _local_dir(path: str) -> str:
    import os

    return os.path.dirname(os.path.abspath(path))


def read_rows(source: str, spec: DataSpec, columns: Columns, *, field_name: str = "data.train",
              output: Optional[OutputSpec] = None) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """`splitting.Reader` for image sources: `(file, row, {image column: ref, label
    column: label})`; for an image folder each image is a row of its own file."""
    image_column, label_column = list(columns)
    images = folder_images(source, spec, field_name, output)
    if images is not None:
        for name in images:
            yield storage.join(source, name), 1, {image_column: storage.join(source, name),
                                                  label_column: name.split("/", 1)[0]}
        return
    for file, row_number, record in sources.iter_rows(source, spec, columns, field_name=field_name,
                                                      output=output):
        yield file, row_number, {image_column: _resolve(record[image_column], file),
                                 label_column: record[label_column]}


# ---------------------------------------------------------------------- rows


def image_key(ref: ImageRef) -> str:
    """What the split hash is taken of: the image's URI, or a digest of its bytes."""
    if isinstance(ref, bytes):
        return "sha256:" + hashlib.sha256(ref).hexdigest()
    return ref


class ImageRows(LabelRules):
    """The splitter's questions about image rows (`splitting.RowRules`)."""

    duplicate_means = "same image and label"

    def __init__(self, config: TrainingConfig, folder_labels: bool) -> None:
        super().__init__(config.data.label_column, config.model, names_only=folder_labels)
        self.data, self.image = config.data, image_spec(config)

    def columns(self, spec: DataSpec) -> Columns:
        return required_columns(spec, self.image)

    def clean(self, record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        image, label = record[self.image.image_column], record[self.data.label_column]
        if isinstance(label, str):
            label = label.strip() or None
        if isinstance(label, float) and label != label:  # NaN
            label = None
        missing = [c for c, v in ((self.image.image_column, image), (self.data.label_column, label)) if v is None]
        return {"image": image, "label": label}, missing

    def check(self, values: dict[str, Any], where: str, row_number: int) -> None:
        if not isinstance(values["image"], (str, bytes)):
            raise DataError(f"{where}: row {row_number}, column {self.image.image_column!r}: "
                            f"{type(values['image']).__name__} is neither an image path nor image bytes")
        super().check(values, where, row_number)

    def row_key(self, values: dict[str, Any]) -> str:
        return image_key(values["image"])

    def dedupe_key(self, values: dict[str, Any]) -> Hashable:
        assert self.coder is not None
        return image_key(values["image"]), self.coder.encode(values["label"], self.train_where)


@dataclass
class Examples:
    """Images (URI or bytes) and label ids of one split on one rank."""

    images: list[ImageRef] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def row_key(self, index: int) -> str:
        return image_key(self.images[index])

    def subset(self, indexes: Sequence[int]) -> "Examples":
        return Examples([self.images[i] for i in indexes], [self.labels[i] for i in indexes],
                        [self.rows[i] for i in indexes])

    def extend(self, more: "Examples") -> None:
        self.images.extend(more.images)
        self.labels.extend(more.labels)
        self.rows.extend(more.rows)


def read_image_bytes(ref: ImageRef, output: Optional[OutputSpec]) -> bytes:
    return ref if isinstance(ref, bytes) else storage.read_bytes(ref, output)


def decode(data: bytes) -> Any:
    """A PIL image, fully decoded (a truncated file fails here, not in training)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _readable(rows: list[Row], field_name: str, image: ImageSpec, output: Optional[OutputSpec],
              report: DataReport, count: bool) -> list[Row]:
    """The rows whose image opens and decodes; S3 images keep their bytes, so training
    does not fetch them again every epoch."""
    kept = []
    for row in rows:
        ref = row.values["image"]
        name = ref if isinstance(ref, str) else f"the image bytes in row {row.row} of {row.file}"
        try:
            data = read_image_bytes(ref, output)
            decode(data)
        except Exception as err:  # PIL raises many types for corrupt files; storage raises StorageError
            if not image.skip_unreadable:
                raise DataError(
                    f"{field_name}: cannot read image {name}: {err} (fix or remove the file, or set "
                    f"image.skipUnreadable: true to skip unreadable images)"
                ) from err
            if count:
                report.skipped_unreadable += 1
            continue
        if isinstance(ref, str) and storage.is_s3(ref):
            row.values["image"] = data
        kept.append(row)
    return kept


def _to_examples(rows: list[Row], coder: LabelCoder, field_name: str) -> Examples:
    out = Examples()
    for row in rows:
        out.images.append(row.values["image"])
        out.labels.append(coder.encode(row.values["label"], f"{field_name} ({row.file}): row {row.row}"))
        out.rows.append(row.position)
    return out


def load_examples(config: TrainingConfig, *, rank: int = 0, world_size: int = 1,
                  shard_eval: bool = True) -> SplitExamples:
    """Read, check, split and shard the image sources of `config.data` for one rank,
    keeping only images that decode."""
    data, image = config.data, image_spec(config)
    folder = folder_images(data.train, data, "data.train", config.output) is not None
    rules = ImageRows(config, folder_labels=folder)
    rows = splitting.split_rows(config, rules, rank=rank, world_size=world_size, shard_eval=shard_eval,
                                reader=read_rows)
    coder = rules.coder
    assert coder is not None
    report = rows.report
    eval_counts = shard_eval or rank == 0
    validation_field = "data.validation" if data.validation else "data.train"
    train_rows = _readable(rows.train, "data.train", image, config.output, report, True)
    validation_rows = _readable(rows.validation, validation_field, image, config.output, report, eval_counts)
    test_rows = (_readable(rows.test, "data.test", image, config.output, report, eval_counts)
                 if rows.test is not None else None)
    train = _to_examples(train_rows, coder, "data.train")
    validation = _to_examples(validation_rows, coder, validation_field)
    test = _to_examples(test_rows, coder, "data.test") if test_rows is not None else None
    report.train, report.validation = len(train), len(validation)
    report.test = len(test) if test is not None else 0
    for label in train.labels:
        report.label_counts[coder.names[label]] = report.label_counts.get(coder.names[label], 0) + 1
    return SplitExamples(train, validation, test, coder.names, report)


def load_test(config: TrainingConfig, label_names: Sequence[str]) -> Optional[Examples]:
    """The whole test split, read from `data.test` alone and checked against
    `label_names` (what training settled), keeping the images that decode; None
    without a test source. Finishing scores it without reading the training data."""
    data, image = config.data, image_spec(config)
    if not data.test:
        return None
    folder = folder_images(data.test, data, "data.test", config.output) is not None
    rules = ImageRows(config, folder_labels=folder)
    rules.coder = LabelCoder(list(label_names))
    report = DataReport()
    rows = splitting.scan(data.test, data, "data.test", rules, rank=0, world_size=1, seed=data.shuffle_seed,
                          output=config.output, report=report, reader=read_rows)
    return _to_examples(_readable(rows, "data.test", image, config.output, report, True), rules.coder, "data.test")


__all__ = [
    "IMAGE_EXTENSIONS",
    "Examples",
    "ImageRef",
    "ImageRows",
    "decode",
    "folder_images",
    "image_key",
    "image_spec",
    "load_examples",
    "load_test",
    "read_image_bytes",
    "read_rows",
    "required_columns",
]
