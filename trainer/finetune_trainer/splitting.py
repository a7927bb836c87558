"""The seeded split, shard and dedupe shared by every task.

Every worker streams the source files once and keeps only its own shard, so no worker
holds the whole dataset in memory. A row's shard and its train/validation side are
decided by a seeded hash of its row key (the task's choice: for text classification
the text and pair text), which makes the split

- identical on every rank and in every run with the same `shuffleSeed`,
- disjoint across ranks and between train and validation, and
- leak-free: exact duplicates always land on the same rank and the same side, so a
  duplicate can never sit in both train and validation, and every rank can drop its
  training duplicates without talking to the others.

Shards are therefore balanced only statistically; a data-parallel loop must agree on
a common number of steps (for example the all-reduced minimum of the loaders' lengths).

What a row means is the task's: `RowRules` reads and checks one record, learns the
label set from the training source (`fit`), and says which rows are duplicates.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Hashable, Iterator, Optional, Protocol, Sequence

from finetune_trainer.config import DataSpec, OutputSpec, TrainingConfig
from finetune_trainer.errors import DataError
from finetune_trainer.sources import Columns, iter_rows


@dataclass
class DataReport:
    """What data preparation kept and dropped, for one rank (merge for all ranks).

    `rows_read` and `dropped_missing` cover every source (train, validation, test);
    `dropped_duplicates` only the training split, where duplicates are removed;
    `skipped_unreadable` counts records a task could not read (such as corrupt images)
    and was told to skip."""

    rows_read: int = 0
    dropped_missing: int = 0
    dropped_duplicates: int = 0
    skipped_unreadable: int = 0
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
            for name in ("rows_read", "dropped_missing", "dropped_duplicates", "skipped_unreadable", "train",
                         "validation", "test"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            for label, count in report.label_counts.items():
                total.label_counts[label] = total.label_counts.get(label, 0) + count
        return total


# ------------------------------------------------------------------ the hash


def row_hash(seed: int, key: str) -> bytes:
    """The seeded digest of a row key: it decides the row's shard and split side."""
    return hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=16).digest()


def shard_of(digest: bytes, world_size: int) -> int:
    return int.from_bytes(digest[:8], "big") % world_size


def is_validation(digest: bytes, fraction: float) -> bool:
    return int.from_bytes(digest[8:], "big") / 2.0**64 < fraction


# ------------------------------------------------------------------ the rows


@dataclass
class Row:
    """One checked row of a source, in the task's own terms (`values`)."""

    file: str
    row: int
    position: int  # 1-based across all files of the source
    values: dict[str, Any]
    digest: bytes


class RowRules(Protocol):
    """What the splitter asks a task about rows (one instance per data load)."""

    duplicate_means: str
    """How a duplicate is described in the strict-mode error, e.g. "same text and label"."""

    def columns(self, spec: DataSpec) -> Columns:
        """The columns to read, each with the setting that names it."""

    def clean(self, record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The row's values, and the columns whose value is missing (in column order)."""

    def check(self, values: dict[str, Any], where: str, row_number: int) -> None:
        """Raise DataError for a bad value; called for every complete row on every rank."""

    def fit(self, where: str) -> None:
        """Called once the training source is scanned: settle the labels, so that the
        further sources and `dedupe_key` check against them."""

    def row_key(self, values: dict[str, Any]) -> str:
        """The text the split/shard hash is taken of."""

    def dedupe_key(self, values: dict[str, Any]) -> Hashable:
        """Rows with equal keys are duplicates."""


Reader = Callable[..., Iterator[tuple[str, int, dict[str, Any]]]]
"""Streams `(file, row number, {column: value})` of a source, as `sources.iter_rows`
(a task with sources of its own, such as image folders, passes its own)."""


def scan(
    source: str,
    spec: DataSpec,
    field_name: str,
    rules: RowRules,
    *,
    rank: int,
    world_size: int,
    seed: int,
    output: Optional[OutputSpec],
    report: DataReport,
    reader: Reader = iter_rows,
) -> list[Row]:
    """Stream one source: check every row, count (on its owning rank) and drop rows
    with a missing value, and keep this rank's rows."""
    kept: list[Row] = []
    position = 0
    for file, row_number, record in reader(source, spec, rules.columns(spec), field_name=field_name,
                                           output=output):
        position += 1
        where = f"{field_name} ({file})"
        owner = (position - 1) % world_size == rank  # who counts this row in the report
        values, missing = rules.clean(record)
        if missing:
            if spec.strict:
                raise DataError(
                    f"{where}: row {row_number}, column {missing[0]!r}: value is missing "
                    f"(data.strict is true; set it to false to drop such rows)"
                )
            if owner:
                report.dropped_missing += 1
            continue
        rules.check(values, where, row_number)  # fails on every rank alike
        if owner:
            report.rows_read += 1
        digest = row_hash(seed, rules.row_key(values))
        if shard_of(digest, world_size) == rank:
            kept.append(Row(file, row_number, position, values, digest))
    if position == 0:
        raise no_data_rows(field_name, source)
    return kept


def no_data_rows(field_name: str, source: str) -> DataError:
    """The error for a source without a single data row (the local check before Ray
    starts says it in the same words)."""
    return DataError(f"{field_name} ({source}): the file has no data rows")


def drop_duplicates(rows: list[Row], rules: RowRules, strict: bool, report: DataReport) -> list[Row]:
    """The training rows without duplicates (the first of each kept, by position)."""
    first: dict[Hashable, Row] = {}
    kept: list[Row] = []
    for row in sorted(rows, key=lambda r: r.position):
        key = rules.dedupe_key(row.values)
        if key in first:
            if strict:
                earlier = first[key]
                other = f"row {earlier.row}" if earlier.file == row.file else f"row {earlier.row} of {earlier.file}"
                raise DataError(
                    f"data.train ({row.file}): row {row.row} duplicates {other} ({rules.duplicate_means}) "
                    f"(data.strict is true; set it to false to drop duplicates)"
                )
            report.dropped_duplicates += 1
            continue
        first[key] = row
        kept.append(row)
    return kept


@dataclass
class SplitRows:
    """The rows of every split on one rank, before the task turns them into examples."""

    train: list[Row]
    validation: list[Row]
    test: Optional[list[Row]]
    report: DataReport


def split_rows(
    config: TrainingConfig, rules: RowRules, *, rank: int = 0, world_size: int = 1, shard_eval: bool = True,
    reader: Reader = iter_rows,
) -> SplitRows:
    """Read, check, split, dedupe and shard every source of `config.data` for one rank.

    With `shard_eval` false every rank keeps the whole validation and test splits
    (for evaluation on rank 0 only)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    spec = config.data
    seed = spec.shuffle_seed
    output = config.output  # its endpoint also serves s3:// data sources
    report = DataReport()
    rows = scan(spec.train, spec, "data.train", rules, rank=rank, world_size=world_size, seed=seed,
                output=output, report=report, reader=reader)
    rules.fit(f"data.train ({spec.train})")

    eval_rank, eval_world = (rank, world_size) if shard_eval else (0, 1)
    # Unsharded evaluation data is read whole by every rank; only rank 0 counts its drops.
    eval_report = report if shard_eval or rank == 0 else DataReport()

    def further(source: str, field: str, rank: int, world_size: int, report: DataReport) -> list[Row]:
        """Rows of a further source, checked against what the training data settled."""
        return scan(source, spec, field, rules, rank=rank, world_size=world_size, seed=seed, output=output,
                    report=report, reader=reader)

    if spec.validation:
        validation = further(spec.validation, "data.validation", eval_rank, eval_world, eval_report)
        train = rows
    else:
        train = [r for r in rows if not is_validation(r.digest, spec.validation_fraction)]
        validation = [r for r in rows if is_validation(r.digest, spec.validation_fraction)]
        if not shard_eval and world_size > 1:
            everything = further(spec.train, "data.train", 0, 1, DataReport())
            validation = [r for r in everything if is_validation(r.digest, spec.validation_fraction)]
    test = None
    if spec.test:
        test = further(spec.test, "data.test", eval_rank, eval_world, eval_report)

    train = drop_duplicates(train, rules, spec.strict, report)
    train.sort(key=lambda r: r.digest)  # the seeded shuffle
    if spec.max_samples is not None:
        quota = spec.max_samples // world_size + (1 if rank < spec.max_samples % world_size else 0)
        train = train[:quota]
    train.sort(key=lambda r: r.position)
    report.train, report.validation = len(train), len(validation)
    report.test = len(test) if test is not None else 0
    return SplitRows(train, validation, test, report)


__all__ = [
    "DataReport",
    "Reader",
    "Row",
    "RowRules",
    "SplitRows",
    "drop_duplicates",
    "is_validation",
    "no_data_rows",
    "row_hash",
    "scan",
    "shard_of",
    "split_rows",
]
