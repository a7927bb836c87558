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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from finetune_trainer.config import StrategySpec
from finetune_trainer.errors import TrainerError
from finetune_trainer.modeling import base_prefix, modules_outside_base, unwrap
from finetune_trainer.tasks import Task, get_task

log = logging.getLogger(__name__)

_LAYER_LIST_NAMES = ("layer", "layers", "h", "block", "blocks")
_EMBEDDING_NAMES = ("embeddings", "embed_tokens", "embed_positions", "wte", "wpe", "word_embeddings")


head_module_names = modules_outside_base
"""Top-level modules outside the base model that hold parameters (see `modeling`)."""


def find_layer_list(model: Any) -> tuple[str, Any]:
    """(dotted name, ModuleList) of the transformer layer stack."""
    from torch import nn

    best: Optional[tuple[str, nn.ModuleList]] = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in _LAYER_LIST_NAMES and len(module):
            if best is None or len(module) > len(best[1]):
                best = (name, module)
    if best is None:
        raise TrainerError(
            f"cannot find the transformer layer stack of {type(model).__name__} "
            f"(no ModuleList named {', '.join(_LAYER_LIST_NAMES)})"
        )
    return best


@dataclass
class ParameterGroups:
    """Parameter names of a task model split into head, layers (bottom to top),
    embeddings and the rest of the base model (pooler, final norms)."""

    head: list[str]
    layers: list[list[str]]
    embeddings: list[str]
    other: list[str]


def _named_layer_list(model: Any, name: str) -> tuple[str, Any]:
    from torch import nn

    module = dict(model.named_modules()).get(name)
    if not isinstance(module, nn.ModuleList) or not len(module):
        raise TrainerError(f"the task names {name!r} as the layer stack of {type(model).__name__}, "
                           f"but that is not a non-empty ModuleList")
    return name, module


def parameter_groups(model: Any, task: Optional[Task] = None, require_head: bool = True) -> ParameterGroups:
    """The model's parameters by part; the layer stack and embeddings where `task`
    names them (`Task.layer_stack`, `Task.embedding_modules`), else found by name.
    `require_head` false allows a model whose head has no parameters of its own (a
    causal LM's output layer tied to its embeddings)."""
    prefix = base_prefix(model)
    stack = task.layer_stack(model) if task is not None else None
    layer_name, layer_list = _named_layer_list(model, stack) if stack else find_layer_list(model)
    layer_prefixes = [f"{layer_name}.{i}." for i in range(len(layer_list))]
    named_embeddings = task.embedding_modules(model) if task is not None else None

    def is_embedding(name: str) -> bool:
        if named_embeddings is not None:
            return name in named_embeddings
        return name.rsplit(".", 1)[-1] in _EMBEDDING_NAMES

    embedding_prefixes = [
        name + "."
        for name, _ in model.named_modules()
        if name.startswith(prefix + ".") and is_embedding(name) and not name.startswith(layer_name + ".")
    ]
    groups = ParameterGroups([], [[] for _ in layer_prefixes], [], [])
    for name, _ in model.named_parameters():
        if not name.startswith(prefix + "."):
            groups.head.append(name)
            continue
        for i, layer_prefix in enumerate(layer_prefixes):
            if name.startswith(layer_prefix):
                groups.layers[i].append(name)
                break
        else:
            if any(name.startswith(p) for p in embedding_prefixes):
                groups.embeddings.append(name)
            else:
                groups.other.append(name)
    if not groups.head and require_head:
        raise TrainerError(f"cannot find a task head outside {type(model).__name__}.{prefix}")
    return groups


def set_trainable(model: Any, names: set[str]) -> None:
    """Make exactly the parameters named in `names` trainable."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in names)


def trainable_names(model: Any) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


@dataclass
class StrategyController:
    """The model to train (for LoRA the peft wrapper) and the strategy's schedule.

    Use `controller.model` for training: with LoRA it is not the model passed in."""

    model: Any
    spec: StrategySpec
    groups: Optional[ParameterGroups] = None
    trainable_changed: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    unfrozen_layers: int = 0
    embeddings_unfrozen: bool = False

    @property
    def num_layers(self) -> int:
        return len(self.groups.layers) if self.groups else 0

    # -------------------------------------------------------- gradual unfreezing

    def _gradual(self):
        return self.spec.gradual_unfreezing if self.spec.type == "gradualUnfreezing" else None

    def _set_stage(self, layers: int, embeddings: bool) -> set[str]:
        """Make the head plus the top `layers` layers (and the embeddings) trainable."""
        assert self.groups is not None
        names = set(self.groups.head)
        if layers:
            names.update(self.groups.other)
        for index in range(self.num_layers - layers, self.num_layers):
            names.update(self.groups.layers[index])
        if embeddings:
            names.update(self.groups.embeddings)
        set_trainable(self.model, names)
        self.unfrozen_layers, self.embeddings_unfrozen = layers, embeddings
        return names

    def _apply_gradual(self, units: int, unit: str) -> bool:
        settings = self._gradual()
        assert settings is not None and self.groups is not None
        stages = units // settings.every
        layers = min(self.num_layers, stages)
        embeddings = settings.unfreeze_embeddings and stages > self.num_layers
        if layers == self.unfrozen_layers and embeddings == self.embeddings_unfrozen:
            return False
        names = self._set_stage(layers, embeddings)
        self.trainable_changed = True
        lowest = self.num_layers - layers
        text = (
            f"layers {lowest}..{self.num_layers - 1} now trainable"
            if layers
            else "only the head is trainable"
        )
        if embeddings:
            text += ", embeddings too"
        log.info("gradual unfreezing: %s (after %s %d)", text, unit, units)
        self.history.append(
            {
                "unit": unit,
                "at": units,
                "layers": [lowest, self.num_layers - 1] if layers else [],
                "embeddings": embeddings,
                "trainable": len(names),
            }
        )
        return True

    def on_epoch_end(self, epoch: int) -> bool:
        """Call after each epoch with the number of epochs completed (1-based).
        Returns True when the trainable set changed."""
        settings = self._gradual()
        return bool(settings and settings.unit == "epoch" and self._apply_gradual(epoch, "epoch"))

    def on_step_end(self, step: int) -> bool:
        """Call after each optimizer step with the number of steps completed (1-based).
        Returns True when the trainable set changed."""
        settings = self._gradual()
        return bool(settings and settings.unit == "step" and self._apply_gradual(step, "step"))

    def restore(self, *, epoch: int = 0, step: int = 0) -> bool:
        """Re-apply the schedule when resuming from a checkpoint taken at epoch/step.
        Returns True when the trainable set changed."""
        settings = self._gradual()
        return bool(settings and self._apply_gradual(epoch if settings.unit == "epoch" else step, settings.unit))

    def state_dict(self) -> dict[str, Any]:
        """The unfreezing stage, saved with a checkpoint: the optimizer state saved
        beside it covers exactly the parameters trainable at this stage."""
        return {"unfrozen_layers": self.unfrozen_layers, "embeddings_unfrozen": self.embeddings_unfrozen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Return to a saved unfreezing stage (before loading the optimizer state saved with it)."""
        if self._gradual() is None:
            return
        layers, embeddings = int(state["unfrozen_layers"]), bool(state["embeddings_unfrozen"])
        if (layers, embeddings) != (self.unfrozen_layers, self.embeddings_unfrozen):
            self._set_stage(layers, embeddings)
            self.trainable_changed = True

    def trainable_parameters(self) -> list[str]:
        return sorted(trainable_names(self.model))


# ---------------------------------------------------------------------- apply


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


ALL_LINEAR = "all-linear"


def lora_targets(spec: StrategySpec, task: Task) -> list[str]:
    """`strategy.lora.targetModules`, else the task's default."""
    settings = spec.resolved().lora
    assert settings is not None
    return list(settings.target_modules or task.default_lora_targets)


def _linear_types() -> tuple[type, ...]:
    from torch import nn

    try:  # a 4-bit base (qlora) holds bitsandbytes' linear layers
        import bitsandbytes as bnb  # type: ignore[import-not-found]

        return (nn.Linear, bnb.nn.Linear4bit)
    except ImportError:
        return (nn.Linear,)


def _apply_lora(model: Any, spec: StrategySpec, task: Task) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model
    from torch import nn

    settings = spec.lora
    assert settings is not None
    targets = lora_targets(spec, task)
    # Linear layers (bitsandbytes' 4-bit ones under qlora), and the convolutions of
    # convolutional vision models (peft adapts both).
    linear = {name for name, module in model.named_modules() if isinstance(module, (*_linear_types(), nn.Conv2d))}
    head = task.head_modules(model)
    if ALL_LINEAR in targets:
        if len(targets) > 1:
            raise TrainerError(f"strategy.lora.targetModules: {ALL_LINEAR} stands alone (got {targets})")
        target_modules: Any = ALL_LINEAR
        matched = "every linear layer but the output layer"
    else:
        matches = [
            n
            for n in linear
            if any(n == t or n.endswith("." + t) for t in targets)
            and not any(n == h or n.startswith(h + ".") for h in head)
        ]
        if not matches:
            available = sorted({n.rsplit(".", 1)[-1] for n in linear})
            raise TrainerError(
                f"strategy.lora.targetModules {targets} match no linear layer of "
                f"{type(model).__name__}; available: {', '.join(available)} (or {ALL_LINEAR})"
            )
        target_modules, matched = targets, f"{len(matches)} modules"
    config = LoraConfig(
        task_type=TaskType(task.peft_task_type) if task.peft_task_type else None,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target_modules,
        modules_to_save=head or None,
    )
    wrapped = get_peft_model(model, config)
    log.info("lora: adapters on %s, head %s trained in full", matched, ", ".join(head) or "(none)")
    return wrapped


def loading_kwargs(strategy: StrategySpec, has_cuda: Optional[bool] = None) -> dict[str, Any]:
    """What `from_pretrained` needs for `strategy`: for `qlora` a 4-bit NF4
    bitsandbytes quantization config (double quantization, bf16 compute). A clear
    error when no CUDA device or no bitsandbytes is there."""
    if strategy.type != "qlora":
        return {}
    import torch

    if not (torch.cuda.is_available() if has_cuda is None else has_cuda):
        raise TrainerError("strategy.type qlora needs a CUDA GPU on every worker (bitsandbytes 4-bit loading); "
                           "this worker has none: give the workers GPUs or use strategy.type lora")
    try:
        import bitsandbytes  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        raise TrainerError("strategy.type qlora needs the bitsandbytes package in the trainer image; install it "
                           "or use strategy.type lora") from None
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16)}


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
        return StrategyController(_apply_lora(model, spec, task), spec)
    if spec.type == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return StrategyController(_apply_lora(model, spec, task), spec)
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
