"""Text classification: labelled text (and optional pair text) in, one class out.

The task's data semantics: which columns it reads (`data.textColumn`,
`data.textPairColumn`, `data.labelColumn`), how a row is checked, how class names
are settled from `model.labels` or the training data (`LabelCoder`), which rows count
as duplicates (same text, pair and label), and the torch dataset and collator that
tokenise them. Reading files is `sources`'; the seeded split/shard/dedupe is
`splitting`'s.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Hashable, Optional, Sequence

from finetune_trainer import splitting
from finetune_trainer.augment import Augmenter
from finetune_trainer.config import DataSpec, ModelSpec, OutputSpec, TrainingConfig
from finetune_trainer.errors import DataError, ModelError
from finetune_trainer.modeling import load_pretrained, modules_outside_base
from finetune_trainer.sources import Columns
from finetune_trainer.splitting import DataReport, Row
from finetune_trainer.tasks._labels import (
    CLASSIFICATION_METRICS, LabelCoder, as_id, evaluate, evaluation_counts, infer_label_names, metrics_from_counts,
)
from finetune_trainer.tasks.base import CardFacts, SplitExamples, Task

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa


def required_columns(spec: DataSpec) -> Columns:
    """The columns text classification reads, each with the setting naming it."""
    columns = {spec.textColumn: "data.textColumn"}
    if spec.textPairColumn:
        columns.setdefault(spec.textPairColumn, "data.textPairColumn")
    columns[spec.labelColumn] = "data.labelColumn"
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


def _text_value(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def row_key(text: str, pair: Optional[str]) -> str:
    """What the seeded split hash is taken of: the text and the pair text, so exact
    duplicates land on the same rank and side whatever their labels."""
    return f"{text}\x00{pair or ''}"


class _Rows:
    """The splitter's questions about one load's rows (`splitting.RowRules`).

    Before `fit` labels are checked against `known` (`model.labels`) or, failing that,
    as integer ids below `num_labels`; every distinct label seen is recorded, so that
    label inference is the same on every rank. After `fit` they are checked against
    the settled class names."""

    duplicate_means = "same text and label"

    def __init__(self, spec: DataSpec, model: Optional[ModelSpec], known: Optional[LabelCoder],
                 num_labels: Optional[int]) -> None:
        self.spec, self.model = spec, model
        self.known, self.num_labels = known, num_labels
        self.seen: dict[Any, None] = {}
        self.coder: Optional[LabelCoder] = None
        self._train_where = "data.train"

    def columns(self, spec: DataSpec) -> Columns:
        return required_columns(spec)

    def clean(self, record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        spec = self.spec
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
        return {"text": text, "pair": pair, "label": label}, missing

    def check(self, values: dict[str, Any], where: str, row_number: int) -> None:
        label = values["label"]
        cell = f"{where}: row {row_number}, column {self.spec.labelColumn!r}"
        if self.known is not None:
            self.known.encode(label, cell)  # fails on every rank alike
        else:
            ident = as_id(label)
            if isinstance(label, (float, bool)) and ident is None or isinstance(label, (list, dict)):
                raise DataError(f"{cell}: label {label!r} is neither a class name nor an integer id")
            num_labels = self.num_labels
            if ident is not None and (ident < 0 or (num_labels is not None and ident >= num_labels)):
                upper = f"0-{num_labels - 1}" if num_labels else "0 or more"
                raise DataError(f"{cell}: label id {ident} is out of range (allowed: {upper})")
        self.seen.setdefault(label if as_id(label) is None else as_id(label), None)

    def fit(self, where: str) -> None:
        assert self.model is not None
        self._train_where = where
        names = infer_label_names(self.model, list(self.seen), f"{where}, column {self.spec.labelColumn!r}")
        self.coder = LabelCoder(names)
        self.known, self.num_labels = self.coder, len(names)

    def row_key(self, values: dict[str, Any]) -> str:
        return row_key(values["text"], values["pair"])

    def dedupe_key(self, values: dict[str, Any]) -> Hashable:
        assert self.coder is not None
        return (values["text"], values["pair"], self.coder.encode(values["label"], self._train_where))


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
    known = LabelCoder(model.labels) if model.labels else None
    rules = _Rows(spec, model, known, model.num_classes)
    rows = splitting.split_rows(config, rules, rank=rank, world_size=world_size, shard_eval=shard_eval)
    coder = rules.coder
    assert coder is not None
    with_pairs = spec.textPairColumn is not None
    train = _to_examples(rows.train, coder, "data.train", with_pairs)
    validation = _to_examples(rows.validation, coder, "data.validation" if spec.validation else "data.train",
                              with_pairs)
    test = _to_examples(rows.test, coder, "data.test", with_pairs) if rows.test is not None else None
    report = rows.report
    for label in train.labels:
        report.label_counts[coder.names[label]] = report.label_counts.get(coder.names[label], 0) + 1
    return SplitExamples(train, validation, test, coder.names, report)


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

    rows = splitting.scan(source, spec, field_name, _Rows(spec, None, None, None), rank=rank,
                          world_size=world_size, seed=spec.shuffleSeed, output=output, report=DataReport())
    columns: dict[str, list] = {
        "file": [r.file for r in rows],
        "row": [r.row for r in rows],
        "text": [r.values["text"] for r in rows],
    }
    if spec.textPairColumn:
        columns["text_pair"] = [r.values["pair"] for r in rows]
    columns["label"] = [str(r.values["label"]) for r in rows]
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


def make_dataset(examples: Examples, tokenizer, config: TrainingConfig, *, train: bool = False
                 ) -> TextClassificationDataset:
    """One split's dataset; the training split augments when `data.augmentation` is set
    (seeded by `training.seed`)."""
    augmentation = config.data.augmentation if train else None
    augmenter = Augmenter(augmentation, config.training.seed) if augmentation is not None else None
    return TextClassificationDataset(examples, tokenizer, config.data.maxSeqLength, augmenter)


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
    train = make_dataset(examples.train, tokenizer, config, train=True)
    validation = make_dataset(examples.validation, tokenizer, config)
    test = make_dataset(examples.test, tokenizer, config) if examples.test is not None else None
    return PreparedData(train, validation, test, examples.label_names, examples.report)


# --------------------------------------------------------------------- model


def load_model_and_tokenizer(
    model_spec: ModelSpec,
    num_labels: int,
    label_names: Sequence[str],
    dropout: Optional[float] = None,
    *,
    output: Optional[OutputSpec] = None,
    cache_dir: Optional[str | os.PathLike] = None,
    load_kwargs: Optional[dict[str, Any]] = None,
):
    """A sequence-classification model with `num_labels` outputs named `label_names`,
    and its tokenizer. A new classification head is initialised when the checkpoint
    has none (or one of another size)."""
    from transformers import AutoModelForSequenceClassification

    if len(label_names) != num_labels:
        raise ModelError(f"{len(label_names)} label names for {num_labels} labels")
    config_kwargs = {
        "num_labels": num_labels,
        "id2label": {i: name for i, name in enumerate(label_names)},
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    return load_pretrained(model_spec, AutoModelForSequenceClassification, purpose="sequence classification",
                           head="classification head", config_kwargs=config_kwargs, dropout=dropout,
                           output=output, cache_dir=cache_dir, load_kwargs=load_kwargs)


# ---------------------------------------------------------------------- task


class TextClassification(Task):
    """`model.task: sequence-classification`: one class for a text (or text pair)."""

    name = "sequence-classification"
    peft_task_type = "SEQ_CLS"
    eval_metrics = CLASSIFICATION_METRICS
    default_metric = "eval_accuracy"

    def columns(self, config: TrainingConfig) -> Columns:
        return required_columns(config.data)

    def load_examples(self, config: TrainingConfig, *, rank: int = 0, world_size: int = 1,
                      shard_eval: bool = True) -> SplitExamples:
        return load_examples(config, rank=rank, world_size=world_size, shard_eval=shard_eval)

    def dataset(self, examples: Examples, processor: Any, config: TrainingConfig, *,
                train: bool = False) -> TextClassificationDataset:
        return make_dataset(examples, processor, config, train=train)

    def collator(self, processor: Any) -> Any:
        return make_collator(processor)

    def load_model(self, model: ModelSpec, label_names: Sequence[str], dropout: Optional[float] = None, *,
                   output: Optional[OutputSpec] = None,
                   cache_dir: Optional[str | os.PathLike] = None,
                   load_kwargs: Optional[dict[str, Any]] = None) -> tuple[Any, Any]:
        return load_model_and_tokenizer(model, len(label_names), label_names, dropout, output=output,
                                        cache_dir=cache_dir, load_kwargs=load_kwargs)

    def head_modules(self, model: Any) -> list[str]:
        return modules_outside_base(model)

    def evaluation_counts(self, model: Any, dataloader: Any, device: Any, label_names: Sequence[str]) -> tuple:
        return evaluation_counts(model, dataloader, device, num_labels=len(label_names))

    def metrics_from_counts(self, counts: tuple) -> dict[str, float]:
        stats, confusion = counts
        return metrics_from_counts(float(stats[0]), int(stats[1]), confusion)

    def card(self, config: TrainingConfig, label_names: Sequence[str]) -> CardFacts:
        data = config.data
        columns = (
            f"- columns: text `{data.textColumn}`"
            + (f", pair `{data.textPairColumn}`" if data.textPairColumn else "")
            + f", label `{data.labelColumn}`; max sequence length {data.maxSeqLength}"
        )
        return CardFacts(
            pipeline_tag="text-classification",
            summary=f"for sequence classification with {len(label_names)} classes: "
            f"{', '.join(f'`{n}`' for n in label_names)}.",
            data_lines=(columns,),
        )


__all__ = [
    "Examples",
    "TextClassification",
    "evaluate",
    "evaluation_counts",
    "load_model_and_tokenizer",
    "metrics_from_counts",
    "LabelCoder",
    "PreparedData",
    "SplitExamples",
    "TextClassificationDataset",
    "infer_label_names",
    "load_examples",
    "make_collator",
    "make_dataset",
    "prepare_datasets",
    "read_table",
    "required_columns",
    "row_key",
]
