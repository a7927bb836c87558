"""Text classification: labelled text (and optional pair text) in, one class out.

The task's records (columns, row checks, class names, duplicates, the `Examples` of
each split) are `text_records`'; here are the torch dataset and collator that
tokenise them, the model, and the `Task` the loop asks. Reading files is `sources`';
the seeded split/shard/dedupe is `splitting`'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from finetune_trainer.augment import Augmenter
from finetune_trainer.config import DataSpec, ModelSpec, OutputSpec, TrainingConfig
from finetune_trainer.errors import ModelError
from finetune_trainer.modeling import load_pretrained, modules_outside_base
from finetune_trainer.sources import Columns
from finetune_trainer.splitting import DataReport
from finetune_trainer.tasks._labels import (
    CLASSIFICATION_METRICS, LabelCoder, evaluate, evaluation_counts, infer_label_names, metrics_from_counts,
)
from finetune_trainer.tasks.base import CardFacts, SplitExamples, Task
from finetune_trainer.tasks.text_records import (
    Examples, load_examples, load_test, read_table, required_columns, row_key,
)


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
    return TextClassificationDataset(examples, tokenizer, config.data.max_seq_length, augmenter)


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

    def load_test(self, config: TrainingConfig, label_names: Sequence[str]) -> Optional[Examples]:
        return load_test(config, label_names)

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
            f"- columns: text `{data.text_column}`"
            + (f", pair `{data.text_pair_column}`" if data.text_pair_column else "")
            + f", label `{data.label_column}`; max sequence length {data.max_seq_length}"
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
    "load_test",
    "make_collator",
    "make_dataset",
    "prepare_datasets",
    "read_table",
    "required_columns",
    "row_key",
]
