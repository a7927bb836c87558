"""Image classification: an image in, one class out.

The task's parts: reading and checking images (`tasks.image_data`), augmentation,
the model's image processor and batches (`tasks.image_transforms`), and here the
model (`AutoModelForImageClassification`, its head replaced for the job's labels),
its anatomy for the strategies (head, layer stack and embeddings of ViT, Swin,
ConvNeXt, ResNet and their kin), evaluation and the card. Metrics and label handling
are the classification ones shared with text (`tasks._labels`).
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Optional, Sequence

from finetune_trainer.config import ModelSpec, OutputSpec, TrainingConfig
from finetune_trainer.errors import ModelError
from finetune_trainer.modeling import base_prefix, load_pretrained, modules_outside_base
from finetune_trainer.sources import Columns
from finetune_trainer.tasks._labels import CLASSIFICATION_METRICS, evaluation_counts, metrics_from_counts
from finetune_trainer.tasks.base import CardFacts, SplitExamples, Task
from finetune_trainer.tasks.image_data import (
    Examples, image_spec, load_examples, load_test, read_rows, required_columns,
)
from finetune_trainer.tasks.image_transforms import ImageAugmenter, ImageClassificationDataset, ImageCollator

_LAYER_STACKS = ("encoder.layer", "encoder.layers", "encoder.stages", "layers", "layer", "stages")
"""Where vision backbones keep their stack of layers or stages, below the base
model: ViT/DeiT/BEiT `encoder.layer` (transformers 5: `layers`), Swin
`encoder.layers` (stages of blocks), ConvNeXt/ResNet/RegNet `encoder.stages`. The
first that exists is the stack, so a stage's own blocks never are."""

_EMBEDDINGS = ("embeddings", "embedder")
"""The patch/stem embedding module of the base model (ResNet calls it `embedder`)."""


def load_model_and_processor(model_spec: ModelSpec, label_names: Sequence[str], dropout: Optional[float] = None,
                             *, output: Optional[OutputSpec] = None,
                             cache_dir: Optional[str | os.PathLike] = None,
                             load_kwargs: Optional[dict[str, Any]] = None) -> tuple[Any, Any]:
    """An image classifier with one output per label (a new head when the checkpoint
    has none, or one for other labels) and the checkpoint's image processor."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    config_kwargs = {  # id2label sets num_labels (passing both warns when the checkpoint has other labels)
        "id2label": {i: name for i, name in enumerate(label_names)},
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    try:
        return load_pretrained(model_spec, AutoModelForImageClassification, purpose="image classification",
                               head="classification head", config_kwargs=config_kwargs, dropout=dropout,
                               output=output, cache_dir=cache_dir, processor_class=AutoImageProcessor,
                               load_kwargs=load_kwargs)
    except OSError as err:  # no preprocessor_config.json
        raise ModelError(f"model.source: {model_spec.source!r} has no image processor "
                         f"(preprocessor_config.json): {err}") from err


def _module_names(model: Any) -> set[str]:
    return {name for name, _ in model.named_modules()}


class ImageClassification(Task):
    """`model.task: image-classification`: one class for an image."""

    name = "image-classification"
    peft_task_type = None  # peft has no image task type: a plain PeftModel, the head in modules_to_save
    eval_metrics = CLASSIFICATION_METRICS
    default_metric = "eval_accuracy"

    def columns(self, config: TrainingConfig) -> Columns:
        return required_columns(config.data, image_spec(config))

    def read_rows(self, config: TrainingConfig, source: str, field_name: str
                  ) -> Iterator[tuple[str, int, dict[str, Any]]]:
        return read_rows(source, config.data, required_columns(config.data, image_spec(config)),
                         field_name=field_name, output=config.output)

    def load_examples(self, config: TrainingConfig, *, rank: int = 0, world_size: int = 1,
                      shard_eval: bool = True) -> SplitExamples:
        return load_examples(config, rank=rank, world_size=world_size, shard_eval=shard_eval)

    def load_test(self, config: TrainingConfig, label_names: Sequence[str]) -> Optional[Examples]:
        return load_test(config, label_names)

    def dataset(self, examples: Examples, processor: Any, config: TrainingConfig, *,
                train: bool = False) -> ImageClassificationDataset:
        augmentation = image_spec(config).augmentation if train else None
        augmenter = ImageAugmenter(augmentation, config.training.seed) if augmentation is not None else None
        return ImageClassificationDataset(examples, processor, augmenter, config.output)

    def collator(self, processor: Any) -> Any:
        return ImageCollator()

    def load_model(self, model: ModelSpec, label_names: Sequence[str], dropout: Optional[float] = None, *,
                   output: Optional[OutputSpec] = None,
                   cache_dir: Optional[str | os.PathLike] = None,
                   load_kwargs: Optional[dict[str, Any]] = None) -> tuple[Any, Any]:
        return load_model_and_processor(model, label_names, dropout, output=output, cache_dir=cache_dir,
                                        load_kwargs=load_kwargs)

    def head_modules(self, model: Any) -> list[str]:
        # Every architecture here names its head `classifier`; others have theirs found.
        head = [name for name, _ in model.named_children() if name == "classifier"]
        return head or modules_outside_base(model)

    def layer_stack(self, model: Any) -> Optional[str]:
        from torch import nn

        prefix = base_prefix(model)
        modules = dict(model.named_modules())
        for place in _LAYER_STACKS:
            module = modules.get(f"{prefix}.{place}")
            if isinstance(module, nn.ModuleList) and len(module):
                return f"{prefix}.{place}"
        return None

    def embedding_modules(self, model: Any) -> Optional[list[str]]:
        prefix = base_prefix(model)
        names = _module_names(model)
        found = [f"{prefix}.{name}" for name in _EMBEDDINGS if f"{prefix}.{name}" in names]
        return found or None

    def evaluation_counts(self, model: Any, dataloader: Any, device: Any, label_names: Sequence[str]) -> tuple:
        return evaluation_counts(model, dataloader, device, num_labels=len(label_names))

    def metrics_from_counts(self, counts: tuple) -> dict[str, float]:
        stats, confusion = counts
        return metrics_from_counts(float(stats[0]), int(stats[1]), confusion)

    def card(self, config: TrainingConfig, label_names: Sequence[str]) -> CardFacts:
        image = image_spec(config)
        source = ("image folders (labels from folder names)" if config.data.format == "imagefolder"
                  or not config.data.train.lower().endswith((".csv", ".tsv", ".jsonl", ".parquet", ".pq"))
                  else f"column `{image.image_column}`, label `{config.data.label_column}`")
        lines = [f"- images: {source}; resized and normalised by the model's own image processor"]
        augmentation = image.augmentation
        if augmentation is not None:
            used = [name for name, on in (("random resized crop", augmentation.random_resized_crop),
                                          ("horizontal flip", augmentation.horizontal_flip),
                                          (f"colour jitter {augmentation.color_jitter:g}",
                                           augmentation.color_jitter > 0)) if on]
            lines.append(f"- training augmentation: {', '.join(used)} (none at evaluation)")
        return CardFacts(
            pipeline_tag="image-classification",
            summary=f"for image classification with {len(label_names)} classes: "
            f"{', '.join(f'`{n}`' for n in label_names)}.",
            data_lines=tuple(lines),
        )


__all__ = ["ImageClassification", "load_model_and_processor"]
