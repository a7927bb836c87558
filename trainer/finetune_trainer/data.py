"""Reading, checking, splitting and sharding labelled text data.

Every worker streams the source files once and keeps only its own shard, so no worker
holds the whole dataset in memory. A row's shard and its train/validation side are
decided by a seeded hash of its text, which makes the split

- identical on every rank and in every run with the same `shuffleSeed`,
- disjoint across ranks and between train and validation, and
- leak-free: exact duplicates always land on the same rank and the same side, so a
  duplicate can never sit in both train and validation, and every rank can drop its
  training duplicates without talking to the others.

Shards are therefore balanced only statistically; a data-parallel loop must agree on
a common number of steps (for example the all-reduced minimum of the loaders' lengths).

Bad data fails with a DataError naming the field, file, 1-based data row and column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from finetune_trainer import storage
from finetune_trainer.augment import Augmenter
from finetune_trainer.config import DataSpec, ModelSpec, OutputSpec, TrainingConfig
from finetune_trainer.errors import DataError, StorageError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_PARQUET_BATCH_ROWS = 4096


# ------------------------------------------------------------------- raw reading


def detect_format(source: str, spec: DataSpec, field_name: str = "data.train") -> str:
    """The file format: `data.format`, else from the extension."""
    if spec.format:
        return spec.format
    if source.startswith("hf://"):
        return "hf"
    lowered = source.lower()
    for extension, fmt in _EXTENSIONS.items():
        if lowered.endswith(extension):
            return fmt
    raise DataError(
        f"{field_name}: cannot tell the format of {source!r} from its extension; set data.format "
        f"to one of csv, tsv, jsonl, parquet (or name the file .csv, .tsv, .jsonl or .parquet)"
    )


def _required_columns(spec: DataSpec) -> list[str]:
    columns = [spec.textColumn, spec.labelColumn]
    if spec.textPairColumn:
        columns.insert(1, spec.textPairColumn)
    return columns


def _missing_column(where: str, column: str, available: Sequence[str], spec: DataSpec) -> DataError:
    setting = {spec.textColumn: "data.textColumn", spec.labelColumn: "data.labelColumn"}.get(
        column, "data.textPairColumn"
    )
    listing = ", ".join(repr(c) for c in available) or "none"
    return DataError(f"{where}: column {column!r} ({setting}) not found; available columns: {listing}")


def _iter_delimited(
    stream: io.TextIOBase, where: str, spec: DataSpec, delimiter: str, allow_empty: bool = False
) -> Iterator[tuple[int, dict]]:
    reader = csv.reader(stream, delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            if allow_empty:
                return
            raise DataError(f"{where}: the file is empty (expected a header row and data rows)")
        header = [h.strip() for h in header]
        wanted = _required_columns(spec)
        for column in wanted:
            if column not in header:
                raise _missing_column(where, column, header, spec)
        positions = {column: header.index(column) for column in wanted}
        row_number = 0
        for values in reader:
            row_number += 1
            if not values:  # a blank line
                row_number -= 1
                continue
            if len(values) != len(header):
                raise DataError(
                    f"{where}: row {row_number} (line {reader.line_num}) has {len(values)} fields but "
                    f"the header has {len(header)}; cannot parse the file (check quoting and the delimiter)"
                )
            yield (
                row_number,
                {column: (values[i] if values[i].strip() != "" else None) for column, i in positions.items()},
            )
    except csv.Error as err:
        raise DataError(f"{where}: cannot parse the file near line {reader.line_num}: {err}") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: the file is not UTF-8 text ({err})") from err


def _iter_jsonl(stream: io.TextIOBase, where: str, spec: DataSpec) -> Iterator[tuple[int, dict]]:
    wanted = _required_columns(spec)
    row_number = 0
    try:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            row_number += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{where}: row {row_number} (line {line_number}) is not valid JSON: {err}"
                ) from err
            if not isinstance(record, dict):
                raise DataError(f"{where}: row {row_number} (line {line_number}) is not a JSON object")
            if row_number == 1:
                for column in wanted:
                    if column not in record:
                        raise _missing_column(where, column, list(record), spec)
            yield row_number, {column: record.get(column) for column in wanted}
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: the file is not UTF-8 text ({err})") from err


def _iter_parquet(
    source: str, where: str, spec: DataSpec, output: Optional[OutputSpec]
) -> Iterator[tuple[int, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle = storage.open_input(source, output)
    try:
        try:
            parquet = pq.ParquetFile(handle)
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"{where}: cannot parse the file as parquet: {err}") from err
        names = parquet.schema_arrow.names
        wanted = _required_columns(spec)
        for column in wanted:
            if column not in names:
                raise _missing_column(where, column, names, spec)
        row_number = 0
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=wanted):
            for record in batch.to_pylist():
                row_number += 1
                yield row_number, record
    finally:
        handle.close()


def _iter_hf(source: str, where: str, spec: DataSpec) -> Iterator[tuple[int, dict]]:
    name, _, split = source[len("hf://") :].partition("@")
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise DataError(
            f"{where}: hf:// sources need the `datasets` package, which is not installed in the trainer "
            f"image; install it, or export the dataset to csv, jsonl or parquet and point the field at "
            f"that file"
        ) from None
    try:
        dataset = datasets.load_dataset(name, split=split or "train")
    except Exception as err:  # datasets raises many types (offline, missing split, ...)
        raise DataError(
            f"{where}: cannot load Hugging Face dataset {name!r} split {split or 'train'!r}: {err}"
        ) from err
    wanted = _required_columns(spec)
    for column in wanted:
        if column not in dataset.column_names:
            raise _missing_column(where, column, dataset.column_names, spec)
    if len(dataset) == 0:
        raise DataError(f"{where}: the dataset split is empty")
    for row_number, record in enumerate(dataset, start=1):
        yield row_number, {column: record.get(column) for column in wanted}


def _is_data_file(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(("_", "."))  # _SUCCESS, .crc and other markers


def list_source_files(
    source: str, spec: DataSpec, *, field_name: str = "data.train", output: Optional[OutputSpec] = None
) -> list[str]:
    """The files a source names: itself, or every data file under a folder/prefix
    (such as a Spark or pandas output of part files), sorted by name."""
    if source.startswith("hf://"):
        return [source]
    from pyarrow import fs as pafs

    try:
        filesystem, path = storage.resolve_filesystem(source, output)
        info = storage.with_retries(
            lambda: filesystem.get_file_info(path), f"checking {source}", attempts=3, backoff=0.2
        )
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"{field_name}: {source} not found")
        if info.type != pafs.FileType.Directory:
            return [source]
        names = [n for n in storage.list_files(source, output) if _is_data_file(n)]
    except StorageError as err:
        raise DataError(f"{field_name}: cannot read {source}: {err}") from err
    if spec.format is None:
        formats = {_EXTENSIONS.get("." + n.rsplit(".", 1)[-1].lower()) for n in names if "." in n} - {None}
        if len(formats) > 1:
            raise DataError(
                f"{field_name}: folder {source} mixes formats ({', '.join(sorted(formats))}); "
                f"keep one format per folder or set data.format"
            )
        names = [n for n in names if "." in n and _EXTENSIONS.get("." + n.rsplit(".", 1)[-1].lower())]
    if not names:
        raise DataError(f"{field_name}: folder {source} holds no data files (.csv, .tsv, .jsonl or .parquet)")
    return [storage.join(source, n) for n in names]


def _iter_file(
    source: str, spec: DataSpec, fmt: str, where: str, output: Optional[OutputSpec], allow_empty: bool
) -> Iterator[tuple[int, dict[str, Any]]]:
    if fmt == "hf":
        yield from _iter_hf(source, where, spec)
    elif fmt == "parquet":
        yield from _iter_parquet(source, where, spec, output)
    else:
        handle = storage.open_input(source, output)
        try:
            text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
            if fmt == "jsonl":
                yield from _iter_jsonl(text, where, spec)
            else:
                yield from _iter_delimited(text, where, spec, "," if fmt == "csv" else "\t", allow_empty)
        finally:
            handle.close()


def iter_rows(
    source: str, spec: DataSpec, *, field_name: str = "data.train", output: Optional[OutputSpec] = None
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Stream `(file, row number in that file, {column: value})` for the text, pair and
    label columns of a file or folder source; empty strings read as None. Raises
    DataError for a missing column or an unparseable file. Row numbers are 1-based
    data rows (the header does not count)."""
    files = list_source_files(source, spec, field_name=field_name, output=output)
    for file in files:
        fmt = detect_format(file, spec, field_name)
        try:
            for row_number, record in _iter_file(
                file, spec, fmt, f"{field_name} ({file})", output, allow_empty=len(files) > 1
            ):
                yield file, row_number, record
        except StorageError as err:
            raise DataError(f"{field_name}: cannot read {file}: {err}") from err


# ------------------------------------------------------------------------ labels


def _as_id(value: Any) -> Optional[int]:
    """The value as a class id when it is one (int, integral float, digit string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


class LabelCoder:
    """Maps raw labels (class names or integer ids) to ids 0..n-1."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self._index = {name: i for i, name in enumerate(self.names)}

    def allowed(self) -> str:
        shown = ", ".join(repr(n) for n in self.names[:20]) + (" ..." if len(self.names) > 20 else "")
        return f"{shown} (or ids 0-{len(self.names) - 1})"

    def encode(self, value: Any, where: str) -> int:
        if isinstance(value, str) and value.strip() in self._index:
            return self._index[value.strip()]
        ident = _as_id(value)
        if ident is not None and 0 <= ident < len(self.names):
            return ident
        raise DataError(f"{where}: unknown label {value!r}; allowed: {self.allowed()}")


# ------------------------------------------------------------------------ report


@dataclass
class DataReport:
    """What data preparation kept and dropped, for one rank (merge for all ranks).

    `rows_read` and `dropped_missing` cover every source (train, validation, test);
    `dropped_duplicates` only the training split, where duplicates are removed."""

    rows_read: int = 0
    dropped_missing: int = 0
    dropped_duplicates: int = 0
    train: int = 0
    validation: int = 0
    test: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def merge(cls, reports: Sequence["DataReport"]) -> "DataReport":
        """The report of all ranks together (each rank counts disjoint rows)."""
        total = cls()
        for report in reports:
            for name in ("rows_read", "dropped_missing", "dropped_duplicates", "train", "validation", "test"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            for label, count in report.label_counts.items():
                total.label_counts[label] = total.label_counts.get(label, 0) + count
        return total


# ---------------------------------------------------------------- split and shard


def _row_hash(seed: int, text: str, pair: Optional[str]) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{text}\x00{pair or ''}".encode(), digest_size=16).digest()


def shard_of(digest: bytes, world_size: int) -> int:
    return int.from_bytes(digest[:8], "big") % world_size


def is_validation(digest: bytes, fraction: float) -> bool:
    return int.from_bytes(digest[8:], "big") / 2.0**64 < fraction


@dataclass
class Examples:
    """Texts, optional pair texts and label ids of one split on one rank."""

    texts: list[str] = field(default_factory=list)
    pairs: Optional[list[str]] = None
    labels: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class _Raw:
    file: str
    row: int
    position: int  # 1-based across all files of the source
    text: str
    pair: Optional[str]
    label: Any
    digest: bytes


def _text_value(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _scan(
    source: str,
    spec: DataSpec,
    field_name: str,
    *,
    rank: int,
    world_size: int,
    seed: int,
    output: Optional[OutputSpec],
    report: DataReport,
    known: Optional[LabelCoder],
    num_labels: Optional[int],
) -> tuple[list[_Raw], list[Any]]:
    """Stream one source: check every row, count (on its owning rank) and drop rows
    with a missing value, and keep this rank's rows. Also returns every distinct raw
    label seen on any rank, so label inference is the same everywhere."""
    kept: list[_Raw] = []
    seen_labels: dict[Any, None] = {}
    position = 0
    for file, row_number, record in iter_rows(source, spec, field_name=field_name, output=output):
        position += 1
        where = f"{field_name} ({file})"
        owner = (position - 1) % world_size == rank  # who counts this row in the report
        text = _text_value(record[spec.textColumn])
        pair = _text_value(record[spec.textPairColumn]) if spec.textPairColumn else None
        label = record[spec.labelColumn]
        if isinstance(label, str):
            label = label.strip() or None
        if isinstance(label, float) and math.isnan(label):
            label = None
        missing = [
            c
            for c, v in ((spec.textColumn, text), (spec.textPairColumn, pair), (spec.labelColumn, label))
            if c and v is None
        ]
        if missing:
            if spec.strict:
                raise DataError(
                    f"{where}: row {row_number}, column {missing[0]!r}: value is missing "
                    f"(data.strict is true; set it to false to drop such rows)"
                )
            if owner:
                report.dropped_missing += 1
            continue
        cell = f"{where}: row {row_number}, column {spec.labelColumn!r}"
        if known is not None:
            known.encode(label, cell)  # fails on every rank alike
        else:
            ident = _as_id(label)
            if isinstance(label, (float, bool)) and ident is None or isinstance(label, (list, dict)):
                raise DataError(f"{cell}: label {label!r} is neither a class name nor an integer id")
            if ident is not None and (ident < 0 or (num_labels is not None and ident >= num_labels)):
                upper = f"0-{num_labels - 1}" if num_labels else "0 or more"
                raise DataError(f"{cell}: label id {ident} is out of range (allowed: {upper})")
        if owner:
            report.rows_read += 1
        seen_labels.setdefault(label if _as_id(label) is None else _as_id(label), None)
        digest = _row_hash(seed, text, pair)
        if shard_of(digest, world_size) == rank:
            kept.append(_Raw(file, row_number, position, text, pair, label, digest))
    if position == 0:
        raise DataError(f"{field_name} ({source}): the file has no data rows")
    return kept, list(seen_labels)


def infer_label_names(model: ModelSpec, seen: Sequence[Any], where: str) -> list[str]:
    """Class names: `model.labels`, else the sorted names found, else ids 0..n-1."""
    if model.labels:
        return list(model.labels)
    names = sorted({v for v in seen if isinstance(v, str)})
    ids = [v for v in seen if isinstance(v, int)]
    if names and ids:
        raise DataError(
            f"{where}: column mixes class names ({', '.join(map(repr, names[:5]))}) and integer ids "
            f"({', '.join(map(str, sorted(ids)[:5]))}); use one kind, or list the names in model.labels"
        )
    if names:
        if model.numLabels is not None and len(names) != model.numLabels:
            raise DataError(
                f"{where}: found {len(names)} distinct labels ({', '.join(map(repr, names[:20]))}) but "
                f"model.numLabels is {model.numLabels}"
            )
        result = names
    else:
        count = model.numLabels or (max(ids) + 1 if ids else 0)
        result = [str(i) for i in range(count)]
    if len(result) < 2:
        raise DataError(
            f"{where}: found only {len(result)} label(s); a classifier needs at least 2 "
            f"(or list the classes in model.labels)"
        )
    return result


def _to_examples(raws: list[_Raw], coder: LabelCoder, field_name: str, with_pairs: bool) -> Examples:
    out = Examples(pairs=[] if with_pairs else None)
    for raw in raws:
        out.texts.append(raw.text)
        if out.pairs is not None:
            out.pairs.append(raw.pair or "")
        out.labels.append(coder.encode(raw.label, f"{field_name} ({raw.file}): row {raw.row}"))
        out.rows.append(raw.position)
    return out


def _drop_duplicates(
    raws: list[_Raw], coder: LabelCoder, where: str, strict: bool, report: DataReport
) -> list[_Raw]:
    first: dict[tuple, _Raw] = {}
    kept: list[_Raw] = []
    for raw in sorted(raws, key=lambda r: r.position):
        key = (raw.text, raw.pair, coder.encode(raw.label, where))
        if key in first:
            if strict:
                earlier = first[key]
                other = (
                    f"row {earlier.row}"
                    if earlier.file == raw.file
                    else f"row {earlier.row} of {earlier.file}"
                )
                raise DataError(
                    f"data.train ({raw.file}): row {raw.row} duplicates {other} (same text and label) "
                    f"(data.strict is true; set it to false to drop duplicates)"
                )
            report.dropped_duplicates += 1
            continue
        first[key] = raw
        kept.append(raw)
    return kept


@dataclass
class SplitExamples:
    """The examples of every split on one rank, before tokenisation."""

    train: Examples
    validation: Examples
    test: Optional[Examples]
    label_names: list[str]
    report: DataReport


def load_examples(
    config: TrainingConfig, *, rank: int = 0, world_size: int = 1, shard_eval: bool = True
) -> SplitExamples:
    """Read, check, split and shard every source of `config.data` for one rank.

    With `shard_eval` false every rank keeps the whole validation and test splits
    (for evaluation on rank 0 only)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    spec, model = config.data, config.model
    seed = spec.shuffleSeed
    output = config.output  # its endpoint also serves s3:// data sources
    report = DataReport()
    known = LabelCoder(model.labels) if model.labels else None
    train_where = f"data.train ({spec.train})"
    raws, seen = _scan(
        spec.train,
        spec,
        "data.train",
        rank=rank,
        world_size=world_size,
        seed=seed,
        output=output,
        report=report,
        known=known,
        num_labels=model.num_classes,
    )
    label_names = infer_label_names(model, seen, f"{train_where}, column {spec.labelColumn!r}")
    coder = LabelCoder(label_names)
    with_pairs = spec.textPairColumn is not None

    eval_rank, eval_world = (rank, world_size) if shard_eval else (0, 1)
    # Unsharded evaluation data is read whole by every rank; only rank 0 counts its drops.
    eval_report = report if shard_eval or rank == 0 else DataReport()

    def scan_labelled(source: str, field: str, rank: int, world_size: int, report: DataReport) -> list:
        """Rows of a further source, checked against the training data's labels."""
        rows, _ = _scan(source, spec, field, rank=rank, world_size=world_size, seed=seed, output=output,
                        report=report, known=coder, num_labels=len(label_names))
        return rows

    if spec.validation:
        validation_raw = scan_labelled(spec.validation, "data.validation", eval_rank, eval_world, eval_report)
        train_raw = raws
    else:
        train_raw = [r for r in raws if not is_validation(r.digest, spec.validationFraction)]
        validation_raw = [r for r in raws if is_validation(r.digest, spec.validationFraction)]
        if not shard_eval and world_size > 1:
            everything = scan_labelled(spec.train, "data.train", 0, 1, DataReport())
            validation_raw = [r for r in everything if is_validation(r.digest, spec.validationFraction)]
    test_raw = None
    if spec.test:
        test_raw = scan_labelled(spec.test, "data.test", eval_rank, eval_world, eval_report)

    train_raw = _drop_duplicates(train_raw, coder, train_where, spec.strict, report)
    train_raw.sort(key=lambda r: r.digest)  # the seeded shuffle
    if spec.maxSamples is not None:
        quota = spec.maxSamples // world_size + (1 if rank < spec.maxSamples % world_size else 0)
        train_raw = train_raw[:quota]
    train_raw.sort(key=lambda r: r.position)

    train = _to_examples(train_raw, coder, "data.train", with_pairs)
    validation = _to_examples(
        validation_raw, coder, "data.validation" if spec.validation else "data.train", with_pairs
    )
    test = _to_examples(test_raw, coder, "data.test", with_pairs) if test_raw is not None else None
    report.train, report.validation = len(train), len(validation)
    report.test = len(test) if test is not None else 0
    for label in train.labels:
        report.label_counts[label_names[label]] = report.label_counts.get(label_names[label], 0) + 1
    return SplitExamples(train, validation, test, label_names, report)


def read_table(
    source: str,
    spec: DataSpec,
    *,
    rank: int = 0,
    world_size: int = 1,
    field_name: str = "data.train",
    output: Optional[OutputSpec] = None,
) -> "pa.Table":
    """This rank's rows of one source as a table (columns file, row, text, [text_pair],
    label with raw label values), rows with a missing value dropped; for inspection
    and tools. `prepare_datasets` is what training uses."""
    import pyarrow as pa

    report = DataReport()
    raws, _ = _scan(
        source,
        spec,
        field_name,
        rank=rank,
        world_size=world_size,
        seed=spec.shuffleSeed,
        output=output,
        report=report,
        known=None,
        num_labels=None,
    )
    columns: dict[str, list] = {
        "file": [r.file for r in raws],
        "row": [r.row for r in raws],
        "text": [r.text for r in raws],
    }
    if spec.textPairColumn:
        columns["text_pair"] = [r.pair for r in raws]
    columns["label"] = [str(r.label) for r in raws]
    return pa.table(columns)


# ----------------------------------------------------------------- torch datasets


class TextClassificationDataset:
    """A map-style torch Dataset that tokenises one example at a time.

    Tokenising lazily keeps memory at the size of the raw texts and lets training
    augmentation draw fresh noise each epoch (`set_epoch`)."""

    def __init__(
        self, examples: Examples, tokenizer, max_length: int, augmenter: Optional[Augmenter] = None
    ) -> None:
        self.examples = examples
        self.tokenizer = tokenizer
        model_max = getattr(tokenizer, "model_max_length", None) or max_length
        self.max_length = min(max_length, model_max) if model_max < 1_000_000 else max_length
        self.augmenter = augmenter
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.examples)

    def text_at(self, index: int) -> str:
        text = self.examples.texts[index]
        if self.augmenter is not None:
            text = self.augmenter(text, epoch=self.epoch, index=self.examples.rows[index])
        return text

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.examples.pairs[index] if self.examples.pairs is not None else None
        encoded = self.tokenizer(self.text_at(index), pair, truncation=True, max_length=self.max_length)
        item = dict(encoded)
        item["labels"] = self.examples.labels[index]
        return item


def make_collator(tokenizer):
    """Pads a list of dataset items to the longest in the batch, as torch tensors."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer=tokenizer, return_tensors="pt")


@dataclass
class PreparedData:
    """Tokenisable datasets of one rank, the class names, and the data report."""

    train: TextClassificationDataset
    validation: TextClassificationDataset
    test: Optional[TextClassificationDataset]
    label_names: list[str]
    report: DataReport


def prepare_datasets(
    config: TrainingConfig, tokenizer, rank: int = 0, world_size: int = 1, *, shard_eval: bool = True
) -> PreparedData:
    """Datasets ready for a DataLoader with `make_collator(tokenizer)`.

    Augmentation (if configured) applies to the training split only, seeded by
    `training.seed`; call `prepared.train.set_epoch(epoch)` every epoch."""
    examples = load_examples(config, rank=rank, world_size=world_size, shard_eval=shard_eval)
    spec = config.data
    augmenter = Augmenter(spec.augmentation, config.training.seed) if spec.augmentation else None
    train = TextClassificationDataset(examples.train, tokenizer, spec.maxSeqLength, augmenter)
    validation = TextClassificationDataset(examples.validation, tokenizer, spec.maxSeqLength)
    test = (
        TextClassificationDataset(examples.test, tokenizer, spec.maxSeqLength)
        if examples.test is not None
        else None
    )
    return PreparedData(train, validation, test, examples.label_names, examples.report)


__all__ = [
    "DataReport",
    "Examples",
    "LabelCoder",
    "PreparedData",
    "SplitExamples",
    "TextClassificationDataset",
    "detect_format",
    "infer_label_names",
    "iter_rows",
    "list_source_files",
    "load_examples",
    "make_collator",
    "prepare_datasets",
    "read_table",
]
