"""Bad data files, every text format against every fault (issue 9): each is one clear
line that names the file and the fault, raised as the job's DataError by the same
function a worker runs; where the fault is in the file's header or first row, the
local check before Ray starts (`check_locally`) already says it, in the same words."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from core_helpers import sentiment_rows, training_config, write_rows
from finetune_trainer.errors import DataError
from finetune_trainer.preflight import check_data
from finetune_trainer.tasks.text_classification import load_examples

FORMATS = ["csv", "tsv", "jsonl", "parquet"]


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _empty(path: Path, fmt: str) -> Path:
    return _write_bytes(path, b"")


def _header_only(path: Path, fmt: str) -> Path:
    if fmt == "parquet":
        pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string())}), path)
        return path
    if fmt == "jsonl":
        return _write_bytes(path, b"\n\n")
    sep = "\t" if fmt == "tsv" else ","
    return _write_bytes(path, f"text{sep}label\n".encode())


def _missing_column(path: Path, fmt: str) -> Path:
    return write_rows(path, [{"sentence": r["text"], "label": r["label"]} for r in sentiment_rows(12)], fmt=fmt)


def _not_utf8(path: Path, fmt: str) -> Path:
    good = write_rows(path, sentiment_rows(12), fmt=fmt)
    return _write_bytes(good, good.read_bytes().replace(b"the", b"th\xff\xfe", 1))


def _corrupt(path: Path, fmt: str) -> Path:
    good = write_rows(path, sentiment_rows(12), fmt=fmt)
    data = good.read_bytes()
    return _write_bytes(good, data[: len(data) // 2])  # cut off mid-file


def _one_class(path: Path, fmt: str) -> Path:
    return write_rows(path, [{"text": r["text"], "label": "pos"} for r in sentiment_rows(12)], fmt=fmt)


def _label_of_wrong_kind(path: Path, fmt: str) -> Optional[Path]:
    if fmt == "parquet":  # raw bytes are neither class names nor ids
        rows = sentiment_rows(12)
        pq.write_table(pa.table({"text": [r["text"] for r in rows],
                                 "label": pa.array([r["label"].encode() for r in rows], pa.binary())}), path)
        return path
    if fmt != "jsonl":
        return None  # every CSV cell is text: any value is a class name
    lines = [json.dumps(r) for r in sentiment_rows(12)]
    lines[4] = json.dumps({"text": "a fine movie", "label": {"score": 3.5}})
    return _write_bytes(path, ("\n".join(lines) + "\n").encode())


def _text_of_wrong_kind(path: Path, fmt: str) -> Path:
    rows = sentiment_rows(12)
    if fmt == "jsonl":
        lines = [json.dumps(r) for r in rows]
        lines[5] = json.dumps({"text": {"nested": "object"}, "label": "pos"})
        return _write_bytes(path, ("\n".join(lines) + "\n").encode())
    if fmt == "parquet":
        pq.write_table(pa.table({"text": list(range(12)), "label": [r["label"] for r in rows]}), path)
        return path
    return None  # every CSV cell is text


def _damaged_parquet(path: Path, fmt: str) -> Optional[Path]:
    if fmt != "parquet":
        return None
    good = write_rows(path, sentiment_rows(12), fmt=fmt)
    data = bytearray(good.read_bytes())
    data[8:40] = b"\xff" * 32  # the first column chunk's bytes, footer intact
    return _write_bytes(good, bytes(data))


# (fault, file writer, the words the message must hold, whether the first row shows it);
# a writer returns None for a format that cannot hold its fault.
CASES: list[tuple[str, Callable[[Path, str], Optional[Path]], str, bool]] = [
    ("empty", _empty, r"empty|no data rows|0 bytes", True),
    ("header only", _header_only, r"no data rows|empty", False),
    ("missing column", _missing_column, r"text", True),
    ("not UTF-8", _not_utf8, r"UTF-8|parquet", False),
    ("cut off", _corrupt, r"parquet|parse|JSON|line|row|UTF-8", False),
    ("one class", _one_class, r"class|label", False),
    ("label of the wrong kind", _label_of_wrong_kind, r"label", False),
    ("text of the wrong kind", _text_of_wrong_kind, r"expected text", False),
    ("damaged parquet", _damaged_parquet, r"parquet", False),
]


def _failure(call: Callable[[], object]) -> Optional[DataError]:
    try:
        call()
    except DataError as err:
        return err
    return None


_NOT_IN = {"label of the wrong kind": {"csv", "tsv"}, "text of the wrong kind": {"csv", "tsv"},
           "damaged parquet": {"csv", "tsv", "jsonl"}}
PARAMS = [pytest.param(fmt, *case, id=f"{case[0]}-{fmt}") for case in CASES for fmt in FORMATS
          if fmt not in _NOT_IN.get(case[0], ())]


@pytest.mark.parametrize("fmt,fault,writer,words,early", PARAMS)
def test_a_bad_file_is_one_clear_line_naming_the_file(tmp_path: Path, fmt: str, fault: str, writer, words: str,
                                                      early: bool) -> None:
    path = writer(tmp_path / f"train.{fmt}", fmt)
    assert path is not None, f"{fault} has no {fmt} writer"
    config = training_config(str(path), str(tmp_path / "out"))
    err = _failure(lambda: load_examples(config))
    assert err is not None, f"{fmt}, {fault}: the worker's loader accepted the file"
    message = str(err)
    assert "\n" not in message and "Traceback" not in message, message
    assert "train." + fmt in message, f"the message does not name the file: {message}"
    assert re.search(words, message), f"{fault}: {message}"
    if early:
        before_ray = _failure(lambda: check_data(config))
        assert before_ray is not None and str(before_ray) == message, (fault, fmt, str(before_ray), message)
