"""Text classification's records: the columns it reads, how a row is cleaned and
checked, how class names are settled from `model.labels` or the training data
(`LabelCoder`), which rows count as duplicates (same text, pair and label), and the
`Examples` of each split. Reading files is `sources`'; the seeded split/shard/dedupe is
`splitting`'s; the torch datasets over these records are `text_classification`'s.
No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Hashable, Optional, Sequence

from finetune_trainer import splitting
from finetune_trainer.config import DataSpec, ModelSpec, OutputSpec, TrainingConfig
from finetune_trainer.errors import DataError
from finetune_trainer.sources import Columns
from finetune_trainer.splitting import DataReport, Row
from finetune_trainer.tasks._labels import LabelCoder, LabelRules
from finetune_trainer.tasks.base import SplitExamples

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa


def required_columns(spec: DataSpec) -> Columns:
    """The columns text classification reads, each with the setting naming it."""
    columns = {spec.text_column: "data.textColumn"}
    if spec.text_pair_column:
        columns.setdefault(spec.text_pair_column, "data.textPairColumn")
    columns[spec.label_column] = "data.labelColumn"
    return columns


# ---------------------------------------------------------------------- rows


@dataclass
class Examples:
    """Texts, optional pair texts and label ids of one split on one rank."""

    texts: list[str] = field(default_factory=list)
    pairs: Optional[list[str]] = None
    labels: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def row_key(self, index: int) -> str:
        """The key the split hash is taken of (see `row_key`), for rebalancing shards."""
        pair = self.pairs[index] if self.pairs is not None else ""
        return f"{self.texts[index]}\x00{pair}"

    def subset(self, indexes: Sequence[int]) -> "Examples":
        return Examples(
            texts=[self.texts[i] for i in indexes],
            pairs=[self.pairs[i] for i in indexes] if self.pairs is not None else None,
            labels=[self.labels[i] for i in indexes],
            rows=[self.rows[i] for i in indexes],
        )

    def extend(self, more: "Examples") -> None:
        self.texts.extend(more.texts)
        if self.pairs is not None:
            self.pairs.extend(more.pairs or [""] * len(more))
        self.labels.extend(more.labels)
        self.rows.extend(more.rows)


def _text_value(value: Any) -> Any:
    """A text cell cleaned: None when missing or blank; a value that is not text
    (a number, an object) is kept as it is, for `_Rows.check` to refuse."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if not isinstance(value, str):
        return value
    return value if value.strip() else None


def row_key(text: str, pair: Optional[str]) -> str:
    """What the seeded split hash is taken of: the text and the pair text, so exact
    duplicates land on the same rank and side whatever their labels."""
    return f"{text}\x00{pair or ''}"


class _Rows(LabelRules):
    """The splitter's questions about one load's rows (`splitting.RowRules`): the
    text columns here, the labels as every classification task checks them
    (`LabelRules`). `known` and `num_labels`, when given, replace what `model` says
    (scoring the test split checks it against the class names training settled)."""

    duplicate_means = "same text and label"

    def __init__(self, spec: DataSpec, model: Optional[ModelSpec], known: Optional[LabelCoder] = None,
                 num_labels: Optional[int] = None) -> None:
        super().__init__(spec.label_column, model)
        self.spec = spec
        if known is not None:
            self.known, self.num_labels = known, num_labels

    def columns(self, spec: DataSpec) -> Columns:
        return required_columns(spec)

    def clean(self, record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        spec = self.spec
        text = _text_value(record[spec.text_column])
        pair = _text_value(record[spec.text_pair_column]) if spec.text_pair_column else None
        label = record[spec.label_column]
        if isinstance(label, str):
            label = label.strip() or None
        if isinstance(label, float) and math.isnan(label):
            label = None
        missing = [
            c
            for c, v in ((spec.text_column, text), (spec.text_pair_column, pair), (spec.label_column, label))
            if c and v is None
        ]
        return {"text": text, "pair": pair, "label": label}, missing

    def check(self, values: dict[str, Any], where: str, row_number: int) -> None:
        for key, column in (("text", self.spec.text_column), ("pair", self.spec.text_pair_column)):
            if values[key] is not None and not isinstance(values[key], str):
                # A typed file (JSON Lines, parquet) whose text column holds numbers or
                # objects: most likely data.textColumn names the wrong column.
                raise DataError(f"{where}: row {row_number}, column {column!r}: expected text, got "
                                f"{type(values[key]).__name__} {values[key]!r:.40}")
        super().check(values, where, row_number)

    def row_key(self, values: dict[str, Any]) -> str:
        return row_key(values["text"], values["pair"])

    def dedupe_key(self, values: dict[str, Any]) -> Hashable:
        assert self.coder is not None
        return (values["text"], values["pair"], self.coder.encode(values["label"], self.train_where))


def _to_examples(rows: list[Row], coder: LabelCoder, field_name: str, with_pairs: bool) -> Examples:
    out = Examples(pairs=[] if with_pairs else None)
    for row in rows:
        out.texts.append(row.values["text"])
        if out.pairs is not None:
            out.pairs.append(row.values["pair"] or "")
        out.labels.append(coder.encode(row.values["label"], f"{field_name} ({row.file}): row {row.row}"))
        out.rows.append(row.position)
    return out


def load_examples(
    config: TrainingConfig, *, rank: int = 0, world_size: int = 1, shard_eval: bool = True
) -> SplitExamples:
    """Read, check, split and shard every source of `config.data` for one rank.

    With `shard_eval` false every rank keeps the whole validation and test splits
    (for evaluation on rank 0 only)."""
    spec, model = config.data, config.model
    rules = _Rows(spec, model)
    rows = splitting.split_rows(config, rules, rank=rank, world_size=world_size, shard_eval=shard_eval)
    coder = rules.coder
    assert coder is not None
    with_pairs = spec.text_pair_column is not None
    train = _to_examples(rows.train, coder, "data.train", with_pairs)
    validation = _to_examples(rows.validation, coder, "data.validation" if spec.validation else "data.train",
                              with_pairs)
    test = _to_examples(rows.test, coder, "data.test", with_pairs) if rows.test is not None else None
    report = rows.report
    for label in train.labels:
        report.label_counts[coder.names[label]] = report.label_counts.get(coder.names[label], 0) + 1
    return SplitExamples(train, validation, test, coder.names, report)


def load_test(config: TrainingConfig, label_names: Sequence[str]) -> Optional[Examples]:
    """The whole test split, read from `data.test` alone and checked against
    `label_names` (what training settled); None without a test source. Finishing scores
    it without reading the training data again."""
    spec = config.data
    if not spec.test:
        return None
    coder = LabelCoder(list(label_names))
    rules = _Rows(spec, config.model, coder, len(coder.names))
    rules.coder = coder
    rows = splitting.scan(spec.test, spec, "data.test", rules, rank=0, world_size=1, seed=spec.shuffle_seed,
                          output=config.output, report=DataReport())
    return _to_examples(rows, coder, "data.test", spec.text_pair_column is not None)


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

    rows = splitting.scan(source, spec, field_name, _Rows(spec, None), rank=rank,
                          world_size=world_size, seed=spec.shuffle_seed, output=output, report=DataReport())
    columns: dict[str, list] = {
        "file": [r.file for r in rows],
        "row": [r.row for r in rows],
        "text": [r.values["text"] for r in rows],
    }
    if spec.text_pair_column:
        columns["text_pair"] = [r.values["pair"] for r in rows]
    columns["label"] = [str(r.values["label"]) for r in rows]
    return pa.table(columns)


__all__ = ["Examples", "load_examples", "load_test", "read_table", "required_columns", "row_key"]
