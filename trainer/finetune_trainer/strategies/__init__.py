"""Fine-tuning strategies: which parameters train, and when that changes.

Works on any transformers task model (a head around a base model) by introspection:
the layer stack is the longest `ModuleList` named `layer`/`layers`/`h`/`block(s)`, the
embeddings are the base model's `*embeddings`/`embed_tokens`/`wte`/`wpe` modules, and
the head's parameters are whatever lies outside the base model (`classifier`, `score`,
`pre_classifier`, ...). What LoRA trains in full beside its adapters, and peft's task
type, are the task's (`Task.head_modules`, `Task.peft_task_type`).

Gradual unfreezing changes the trainable set during training. `on_epoch_end` /
`on_step_end` return True and set `trainable_changed` when that happens; a DDP loop
must then rebuild its optimizer (newly trainable parameters are not in its param
groups) and either rebuild the DDP wrapper or wrap with `find_unused_parameters=True`
(DDP registers gradient hooks only for parameters that required grad at wrap time).
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any, Optional

from finetune_trainer.config import StrategySpec
from finetune_trainer.errors import TrainerError
from finetune_trainer.modeling import unwrap
from finetune_trainer.strategies.controller import StrategyController
from finetune_trainer.strategies.layers import (ParameterGroups, find_layer_list, head_module_names,
                                                parameter_groups, set_trainable, trainable_names)
from finetune_trainer.strategies.lora import apply_lora, loading_kwargs, lora_targets
from finetune_trainer.tasks import Task, get_task

log = logging.getLogger(__name__)


def _apply_partial(model: Any, spec: StrategySpec, task: Optional[Task] = None) -> ParameterGroups:
    settings = spec.partial
    assert settings is not None
    groups = parameter_groups(model, task, require_head=False)
    if settings.freeze_layers > len(groups.layers):
        raise TrainerError(
            f"strategy.partial.freezeLayers is {settings.freeze_layers} but the model has only "
            f"{len(groups.layers)} layers (allowed: 0-{len(groups.layers)})"
        )
    frozen: set[str] = set()
    if settings.freeze_embeddings:
        frozen.update(groups.embeddings)
    for layer in groups.layers[: settings.freeze_layers]:
        frozen.update(layer)
    patterns = [re.compile(p) for p in settings.freeze_patterns]
    names = [name for name, _ in model.named_parameters()]
    for pattern in patterns:
        matched = [n for n in names if pattern.search(n)]
        if not matched:
            log.warning("strategy.partial.freezePatterns: %r matches no parameter", pattern.pattern)
        frozen.update(matched)
    trainable = set(names) - frozen
    if not trainable:
        raise TrainerError("strategy.partial freezes every parameter; nothing would train")
    set_trainable(model, trainable)
    log.info("partial fine-tuning: %d of %d parameter tensors frozen", len(frozen), len(names))
    return groups


def apply_strategy(model: Any, strategy: StrategySpec, task: Optional[Task] = None) -> StrategyController:
    """Freeze/wrap `model` (a model of `task`, by default the default `model.task`'s)
    as `strategy` says; train `controller.model` afterwards."""
    task = task or get_task()
    spec = strategy.resolved()
    if spec.type == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return StrategyController(model, spec)
    if spec.type == "partial":
        return StrategyController(model, spec, groups=_apply_partial(model, spec, task))
    if spec.type == "featureExtraction":
        groups = parameter_groups(model, task)
        set_trainable(model, set(groups.head))
        log.info("feature extraction: only the head (%s) is trainable", ", ".join(task.head_modules(model)))
        return StrategyController(model, spec, groups=groups)
    if spec.type == "gradualUnfreezing":
        groups = parameter_groups(model, task)
        set_trainable(model, set(groups.head))
        controller = StrategyController(model, spec, groups=groups)
        controller.history.append(
            {
                "unit": spec.gradual_unfreezing.unit,
                "at": 0,
                "layers": [],
                "embeddings": False,
                "trainable": len(groups.head),
            }
        )
        log.info("gradual unfreezing: only the head is trainable; %d layers to unfreeze", len(groups.layers))
        return controller
    if spec.type == "lora":
        return StrategyController(apply_lora(model, spec, task), spec)
    if spec.type == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return StrategyController(apply_lora(model, spec, task), spec)
    raise TrainerError(f"strategy.type: unknown strategy {spec.type!r}")  # pragma: no cover


def export_model(model: Any, strategy: StrategySpec, out_dir: str | Path, tokenizer: Any = None, *,
                 keep_model: bool = True) -> Path:
    """Save the trained model (and tokenizer) as a `from_pretrained` folder.

    `qlora` saves the adapter alone (its base is 4-bit). LoRA with `mergeOnExport`
    saves the merged plain model: a copy is merged, so the training model is left as
    is, unless `keep_model` is false (the caller is done with it), when it is merged
    in place and no second copy is held. Without `mergeOnExport` only the adapter is
    saved, loadable with peft on top of the base model."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = unwrap(model)
    spec = strategy.resolved()
    if spec.type in ("lora", "qlora"):
        if spec.lora.merge_on_export and spec.type == "lora":
            merged = (copy.deepcopy(model) if keep_model else model).merge_and_unload()
            merged.save_pretrained(out)
        else:
            model.save_pretrained(out)
    else:
        model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


__all__ = [
    "ParameterGroups",
    "StrategyController",
    "apply_strategy",
    "export_model",
    "find_layer_list",
    "head_module_names",
    "loading_kwargs",
    "lora_targets",
    "parameter_groups",
    "set_trainable",
    "trainable_names",
    "unwrap",
]
