"""The interface every task implements, and the record of its split data.

The loop, the runner, strategies, evaluation, export and telemetry hold a `Task` and
ask it; none of them names a task. A task owns what differs between tasks: the
columns it reads and what a row means, its label set ("metadata", stored with every
checkpoint as `label_names`), the model class and its processor (tokenizer), the
dataset and collator, the evaluation counts and the metrics made from them, which
modules form its head, the peft task type, and what the model card says.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Optional, Sequence

from finetune_trainer.config import ModelSpec, OutputSpec, TrainingConfig
from finetune_trainer.sources import Columns, iter_rows
from finetune_trainer.splitting import DataReport


@dataclass
class SplitExamples:
    """The examples of every split on one rank, before tokenisation (each split in
    the task's own container), with the task's label names and the data report."""

    train: Any
    validation: Any
    test: Optional[Any]
    label_names: list[str]
    report: DataReport


@dataclass(frozen=True)
class CardFacts:
    """What the model card says about the task."""

    pipeline_tag: str
    """The Hugging Face pipeline tag (front matter and tags)."""
    summary: str
    """One sentence after the title: what the model was fine-tuned for."""
    data_lines: tuple[str, ...] = ()
    """Task-specific lines of the card's Data section (e.g. the columns read)."""


class Task(ABC):
    """One training task, keyed by `model.task` in the registry (`tasks.TASKS`)."""

    name: ClassVar[str]
    """The `model.task` value that selects this task."""
    peft_task_type: ClassVar[Optional[str]]
    """peft's `TaskType` name for LoRA (e.g. `SEQ_CLS`); None where peft has none (a
    plain `PeftModel` around the task model, e.g. for image classification)."""
    eval_metrics: ClassVar[dict[str, str]]
    """The metrics `metrics_from_counts` returns, each with a one-line description
    (used for the gauges and the history); `eval_loss` among them."""
    default_metric: ClassVar[str]
    """The metric the curves show when no sweep names one."""
    default_lora_targets: ClassVar[tuple[str, ...]] = ("query", "value")
    """LoRA's target modules when `strategy.lora.targetModules` is unset (`all-linear`:
    every linear layer but the output layer)."""

    # ------------------------------------------------------------------ data

    @abstractmethod
    def columns(self, config: TrainingConfig) -> Columns:
        """The columns the task reads from `config.data`, each with the setting that
        names it."""

    def read_rows(self, config: TrainingConfig, source: str, field_name: str
                  ) -> Iterator[tuple[str, int, dict[str, Any]]]:
        """Stream `(file, row, record)` of one source as this task reads it (what
        `preflight` peeks at): by default a table read by `sources`."""
        return iter_rows(source, config.data, self.columns(config), field_name=field_name,
                         output=config.output)

    @abstractmethod
    def load_examples(self, config: TrainingConfig, *, rank: int = 0, world_size: int = 1,
                      shard_eval: bool = True) -> SplitExamples:
        """Read, check, split and shard `config.data` for one rank (see `splitting`),
        settling the label names from the training data."""

    @abstractmethod
    def load_test(self, config: TrainingConfig, label_names: Sequence[str]) -> Optional[Any]:
        """The whole test split (`data.test`) checked against the label names training
        settled, reading that source only; None when the job has no test source."""

    @abstractmethod
    def dataset(self, examples: Any, processor: Any, config: TrainingConfig, *, train: bool = False) -> Any:
        """A map-style torch Dataset over one split's examples (`train`: the training
        split, which may augment; call its `set_epoch` every epoch)."""

    @abstractmethod
    def collator(self, processor: Any) -> Any:
        """Makes a batch of tensors from a list of dataset items."""

    def batch_samples(self, batch: dict[str, Any]) -> int:
        """How many training samples a batch holds."""
        return int(batch["labels"].shape[0])

    def batch_tokens(self, batch: dict[str, Any]) -> int:
        """How many real (non-pad) tokens a batch holds, for throughput (0: not counted)."""
        return int(batch["attention_mask"].sum()) if "attention_mask" in batch else 0

    # ----------------------------------------------------------------- model

    @abstractmethod
    def load_model(self, model: ModelSpec, label_names: Sequence[str], dropout: Optional[float] = None, *,
                   output: Optional[OutputSpec] = None,
                   cache_dir: Optional[str | os.PathLike] = None,
                   load_kwargs: Optional[dict[str, Any]] = None) -> tuple[Any, Any]:
        """(model, processor) ready to fine-tune, the head sized for `label_names`;
        `load_kwargs` go to `from_pretrained` (a strategy's, e.g. a quantization config)."""

    @abstractmethod
    def head_modules(self, model: Any) -> list[str]:
        """Top-level module names of the task head: trained in full under LoRA
        (`modules_to_save`), the only trainable part under feature extraction."""

    def layer_stack(self, model: Any) -> Optional[str]:
        """Dotted name of the ModuleList of layers (bottom to top) that partial
        freezing and gradual unfreezing count in; None: `strategies` finds it by
        introspection (the longest `layer`/`layers`/`h`/`block(s)` list)."""
        return None

    def embedding_modules(self, model: Any) -> Optional[list[str]]:
        """Dotted names of the modules holding the input embeddings (frozen by
        `partial.freezeEmbeddings`, unfrozen last by gradual unfreezing); None:
        found by introspection (`*embeddings`, `embed_tokens`, `wte`, ...)."""
        return None

    # ------------------------------------------------------------ evaluation

    @abstractmethod
    def evaluation_counts(self, model: Any, dataloader: Any, device: Any, label_names: Sequence[str]) -> tuple:
        """Tensors of summable counts over this rank's batches (sums over ranks give
        the counts of the whole split)."""

    @abstractmethod
    def metrics_from_counts(self, counts: tuple) -> dict[str, float]:
        """The metrics (`eval_metrics`) from counts summed over every rank."""

    # ------------------------------------------------------------------ card

    @abstractmethod
    def card(self, config: TrainingConfig, label_names: Sequence[str]) -> CardFacts:
        """What the model card says about the task."""

    def wants_base_model_for_card(self, config: TrainingConfig) -> bool:
        """Whether `card_sections` compares with the base model (loaded for it)."""
        return False

    def card_sections(self, config: TrainingConfig, model: Any, processor: Any, examples: SplitExamples,
                      base_model: Any = None) -> list[str]:
        """Further Markdown lines of the model card made with the trained model (e.g.
        sample generations); none by default."""
        return []


__all__ = ["CardFacts", "SplitExamples", "Task"]
