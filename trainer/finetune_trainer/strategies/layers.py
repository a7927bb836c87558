"""Where a transformers task model's parts are, by introspection: the layer stack (the
longest `ModuleList` named `layer`/`layers`/`h`/`block(s)`), the embeddings (the base
model's `*embeddings`/`embed_tokens`/`wte`/`wpe` modules) and the head (whatever lies
outside the base model); and which parameters train."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from finetune_trainer.errors import TrainerError
from finetune_trainer.modeling import base_prefix, modules_outside_base
from finetune_trainer.tasks import Task

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


__all__ = ["ParameterGroups", "find_layer_list", "head_module_names", "parameter_groups", "set_trainable",
           "trainable_names"]
