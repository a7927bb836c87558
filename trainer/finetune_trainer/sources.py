"""Reading data sources: csv, tsv, jsonl, parquet and hf:// datasets, from local
paths or s3://, one file or a folder of part files.

The readers know formats, not tasks: a task says which columns it needs (and the
setting that names each, for messages), and the readers stream `{column: value}`
for those columns only, with empty strings read as None. Bad files fail with a
DataError naming the field, file, 1-based data row and column.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterator, Mapping, Optional, Sequence

from finetune_trainer import storage
from finetune_trainer.config import DataSpec, OutputSpec
from finetune_trainer.errors import DataError, StorageError

Columns = Mapping[str, str]
"""The columns a task reads, in order, each with the setting that names it
(e.g. `{"text": "data.textColumn", "label": "data.labelColumn"}`)."""

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_PARQUET_BATCH_ROWS = 4096


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


class MissingColumnError(DataError):
    """A source lacks a column the task reads (a task that detects its record layout
    from the columns tries the next layout on this)."""


def _missing_column(where: str, column: str, available: Sequence[str], columns: Columns) -> DataError:
    listing = ", ".join(repr(c) for c in available) or "none"
    return MissingColumnError(f"{where}: column {column!r} ({columns[column]}) not found; available columns: {listing}")



def _iter_delimited(
    stream: io.TextIOBase, where: str, columns: Columns, delimiter: str, allow_empty: bool = False
) -> Iterator[tuple[int, dict]]:
    reader = csv.reader(stream, delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            if allow_empty:
                return
            raise DataError(f"{where}: the file is empty (expected a header row and data rows)")
        header = [h.strip() for h in header]
        wanted = list(columns)
        for column in wanted:
            if column not in header:
                raise _missing_column(where, column, header, columns)
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


def _iter_jsonl(stream: io.TextIOBase, where: str, columns: Columns) -> Iterator[tuple[int, dict]]:
    wanted = list(columns)
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
                        raise _missing_column(where, column, list(record), columns)
            yield row_number, {column: record.get(column) for column in wanted}
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: the file is not UTF-8 text ({err})") from err


def _one_line(err: BaseException) -> str:
    """A library's error message on one line (pyarrow's run over several)."""
    return " ".join(str(err).split())


def _iter_parquet(
    source: str, where: str, columns: Columns, output: Optional[OutputSpec]
) -> Iterator[tuple[int, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle = storage.open_input(source, output)
    try:
        try:
            parquet = pq.ParquetFile(handle)
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"{where}: cannot parse the file as parquet: {_one_line(err)}") from err
        names = parquet.schema_arrow.names
        wanted = list(columns)
        for column in wanted:
            if column not in names:
                raise _missing_column(where, column, names, columns)
        row_number = 0
        batches = parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=wanted)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowInvalid, OSError) as err:  # a damaged row group
                raise DataError(f"{where}: cannot read the parquet file after row {row_number}: "
                                f"{_one_line(err)}") from err
            if batch is None:
                break
            for record in batch.to_pylist():
                row_number += 1
                yield row_number, record
    finally:
        handle.close()


def _iter_hf(source: str, where: str, columns: Columns) -> Iterator[tuple[int, dict]]:
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
    wanted = list(columns)
    for column in wanted:
        if column not in dataset.column_names:
            raise _missing_column(where, column, dataset.column_names, columns)
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
    source: str, columns: Columns, fmt: str, where: str, output: Optional[OutputSpec], allow_empty: bool
) -> Iterator[tuple[int, dict[str, Any]]]:
    if fmt == "hf":
        yield from _iter_hf(source, where, columns)
    elif fmt == "parquet":
        yield from _iter_parquet(source, where, columns, output)
    else:
        handle = storage.open_input(source, output)
        try:
            text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
            if fmt == "jsonl":
                yield from _iter_jsonl(text, where, columns)
            else:
                yield from _iter_delimited(text, where, columns, "," if fmt == "csv" else "\t", allow_empty)
        finally:
            handle.close()


def iter_rows(
    source: str,
    spec: DataSpec,
    columns: Columns,
    *,
    field_name: str = "data.train",
    output: Optional[OutputSpec] = None,
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Stream `(file, row number in that file, {column: value})` for `columns` of a
    file or folder source; empty strings read as None. Raises
    DataError for a missing column or an unparseable file. Row numbers are 1-based
    data rows (the header does not count)."""
    files = list_source_files(source, spec, field_name=field_name, output=output)
    for file in files:
        fmt = detect_format(file, spec, field_name)
        try:
            for row_number, record in _iter_file(
                file, columns, fmt, f"{field_name} ({file})", output, allow_empty=len(files) > 1
            ):
                yield file, row_number, record
        except StorageError as err:
            raise DataError(f"{field_name}: cannot read {file}: {err}") from err


__all__ = ["Columns", "MissingColumnError", "detect_format", "iter_rows", "list_source_files"]
