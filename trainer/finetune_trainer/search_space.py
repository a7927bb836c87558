"""Dotted paths into the training configuration, as used by Tune search spaces and
`finetune run --set`.

A path names a field by its YAML (camelCase) spelling, for example
`training.learningRate` or `strategy.lora.r`. Paths are checked against the model
classes, so a typo is caught before anything runs. This module knows no model of its
own: the configuration (`finetune_trainer.config`) hands it its `TrainingConfig`,
and applying overrides to a config (`config.with_overrides`) lives beside the models.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Iterator, Mapping, Union

from pydantic import BaseModel

# Parts of the configuration a sweep may vary. Sources, output and the sweep itself
# are not hyperparameters.
TUNABLE_ROOTS = ("training", "strategy", "data")
# Free-form strings (paths, column names) are not hyperparameters; enums are.
_SCALARS = (int, float, bool)


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types an annotation allows, with Optional removed."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) if arg is not type(None) for t in _unwrap(arg)]
    return [annotation]


def _is_scalar(annotation: Any) -> bool:
    for t in _unwrap(annotation):
        if typing.get_origin(t) is typing.Literal:
            continue
        if not (isinstance(t, type) and issubclass(t, _SCALARS)):
            return False
    return True


def _walk(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}.{key}" if prefix else key
        for t in _unwrap(field.annotation):
            if isinstance(t, type) and issubclass(t, BaseModel):
                yield from _walk(t, path)
                break
        else:
            if _is_scalar(field.annotation):
                yield path


def tunable_paths(blocks: Mapping[str, type[BaseModel]]) -> list[str]:
    """Every scalar field under TUNABLE_ROOTS, given each root's model class (`blocks`,
    keyed by root name): what a sweep or `--set` may change."""
    return [p for root in TUNABLE_ROOTS for p in _walk(blocks[root], root)]


def check_tunable_path(path: str, blocks: Mapping[str, type[BaseModel]]) -> None:
    """Raise ValueError naming the closest tunable path when `path` is not one."""
    allowed = tunable_paths(blocks)
    if path in allowed:
        return
    close = difflib.get_close_matches(path, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; tunable roots are {', '.join(TUNABLE_ROOTS)}"
    raise ValueError(f"'{path}' is not a tunable field{hint}")


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted camelCase path in a plain dict, creating parents as needed."""
    *parents, leaf = path.split(".")
    node = document
    for key in parents:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ValueError(f"{path}: '{key}' is not an object")
        node = child
    node[leaf] = value
