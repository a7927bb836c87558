"""Tiny real models and data files for fast trainer tests (no downloads, no Ray).

`make_tiny_model_dir(path, num_labels)` saves a random 2-layer BERT (hidden size 32)
and a WordPiece tokenizer built from `VOCAB`, so `from_pretrained(path)` works offline
in milliseconds. Other trainer tests may import these helpers:
`from tests.trainer.unit.core_helpers import make_tiny_model_dir, write_rows`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import pytest

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an and or but not is was are be this that it movie film story plot actor actors great good bad "
    "awful terrible wonderful boring fun love loved hate hated liked best worst ever very really so too much "
    "acting music ending scene scenes time people i you we they he she what how why one two three four five "
    "six seven eight nine ten yes no question answer same different sentence pair cat dog sat on mat was far"
).split()
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
VOCAB = SPECIAL + sorted(set(WORDS)) + list(_CHARS + ".,!?'") + [f"##{c}" for c in _CHARS]


def make_tokenizer(directory: Path):
    """A BertTokenizerFast over VOCAB, saved in `directory`."""
    from transformers import BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n")
    vocab = {token: i for i, token in enumerate(VOCAB)}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=64)
    tokenizer.save_pretrained(directory)
    return tokenizer


def make_tiny_model_dir(
    directory: Path,
    num_labels: int = 2,
    num_layers: int = 2,
    seed: int = 0,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Save a random tiny BertForSequenceClassification and its tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    names = list(label_names) if label_names else [f"LABEL_{i}" for i in range(num_labels)]
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=num_labels,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(directory)
    make_tokenizer(directory)
    return directory


SENTIMENT = [
    ("a great movie i loved it", "pos"),
    ("the worst film ever", "neg"),
    ("wonderful acting and music", "pos"),
    ("boring plot and bad acting", "neg"),
    ("really fun and good", "pos"),
    ("i hated the ending", "neg"),
    ("best story so far", "pos"),
    ("awful terrible scenes", "neg"),
    ("very good actors", "pos"),
    ("too much boring time", "neg"),
]


def sentiment_rows(n: int) -> list[dict[str, Any]]:
    """`n` distinct labelled rows (texts made unique with a number word suffix)."""
    rows = []
    for i in range(n):
        text, label = SENTIMENT[i % len(SENTIMENT)]
        rows.append({"text": f"{text} {i}", "label": label})
    return rows


def write_rows(path: Path, rows: Sequence[dict[str, Any]], fmt: str | None = None) -> Path:
    """Write rows as csv, tsv, jsonl or parquet (from the suffix unless `fmt`)."""
    fmt = fmt or path.suffix.lstrip(".")
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else ["text", "label"]
    if fmt in ("csv", "tsv"):
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, delimiter="," if fmt == "csv" else "\t")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if v is None else v for k, v in row.items()})
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(list(rows)), path, row_group_size=7)
    else:
        raise ValueError(fmt)
    return path


def training_config(train: str, output_uri: str, **overrides: Any):
    """A TrainingConfig for a tiny run; `overrides` are top-level sections as dicts."""
    from finetune_trainer.config import TrainingConfig

    raw: dict[str, Any] = {
        "model": {"source": "unused"},
        "data": {"train": train},
        "output": {"uri": output_uri},
    }
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value}
    return TrainingConfig.model_validate(raw)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny 2-label BERT classifier (shared by the session; do not modify)."""
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-bert"), num_labels=2)


@pytest.fixture
def tiny_model_dir(tmp_path: Path):
    """Factory: `tiny_model_dir(num_labels=2, num_layers=2)` saves a fresh tiny model."""
    counter = iter(range(1000))

    def make(num_labels: int = 2, num_layers: int = 2, **kwargs: Any) -> Path:
        return make_tiny_model_dir(tmp_path / f"tiny-{next(counter)}", num_labels, num_layers, **kwargs)

    return make


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)
