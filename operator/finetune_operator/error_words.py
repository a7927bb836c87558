"""One pydantic error in plain words: what was wrong with the value and what the field
allows, read off the models themselves (their Literals, bounds, patterns and fields).

`manifests` pairs each sentence with the field's YAML path; pydantic's own wording
never reaches the user.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel

from finetune_operator.api import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, QUANTITY_PATTERN

# Patterns whose regular expression would mean little to a reader, in words.
_PATTERN_WORDS = {
    DNS_SUBDOMAIN_PATTERN: "a lowercase DNS name (letters, digits, '-' and '.', starting and ending "
    "with a letter or digit)",
    DNS_LABEL_PATTERN: "a lowercase DNS label (letters, digits and '-', starting and ending with a "
    "letter or digit)",
    QUANTITY_PATTERN: "a Kubernetes quantity such as 2, 500m or 8Gi",
    r"^https?://[^\s/]+(/.*)?$": "an http:// or https:// URL",
}


def error_message(error: dict[str, Any], model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The plain sentence for one pydantic error of `model` at `loc` (its YAML path is
    the caller's)."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = show_value(error.get("input"))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return _unknown_field(model, loc)
    if kind in _BOUNDS:
        symbol, key = _BOUNDS[kind]
        return f"must be {symbol} {_number(ctx[key])} (got {got})"
    if kind == "literal_error":
        allowed = _literal_values(model, loc)
        if allowed is not None and len(allowed) == 1:
            return f"must be {allowed[0]} (got {got})"
        choices = ", ".join(map(str, allowed)) if allowed is not None else ctx.get("expected", "")
        return f"must be one of: {choices} (got {got})"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        return f"must be {_PATTERN_WORDS.get(pattern, f'text matching {pattern}')} (got {got})"
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must have at least {least} characters (got {got})"
    if kind == "string_too_long":
        return f"must have at most {ctx.get('max_length')} characters (got {len(str(error.get('input')))})"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} entries (got {ctx.get('actual_length')})"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} entries (got {ctx.get('actual_length')})"
    if kind in ("value_error", "assertion_error"):
        return _plain_value_error(error)
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]} (got {got})"
    # Anything not translated above still gets a readable sentence, not a traceback.
    text = str(error.get("msg", "is invalid"))
    return f"{text[:1].lower()}{text[1:]} (got {got})"


_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
    "multiple_of": ("a multiple of", "multiple_of"),
}

_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "datetime_type": "an RFC 3339 timestamp",
    "datetime_parsing": "an RFC 3339 timestamp",
    "datetime_from_date_parsing": "an RFC 3339 timestamp",
}


def _plain_value_error(error: dict[str, Any]) -> str:
    cause = (error.get("ctx") or {}).get("error")
    text = str(cause) if cause is not None else str(error.get("msg", ""))
    for prefix in ("Value error, ", "Assertion failed, "):
        text = text.removeprefix(prefix)
    return text


def show_value(value: Any) -> str:
    """A short rendering of a user's value: strings quoted, mappings and lists by type."""
    if isinstance(value, (dict, list)):
        return type_name(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> str:
    """`0.0` -> `0`, `1e-08` stays: bounds read as the user would write them."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------- what the models allow where


def _concrete(annotation: Any) -> list[Any]:
    """The types an annotation allows, Optional and unions flattened."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) if arg is not type(None) for t in _concrete(arg)]
    return [annotation]


def _step(annotation: Any, key: Any) -> Any:
    """The annotation found one path element below `annotation`, or None."""
    for t in _concrete(annotation):
        origin = typing.get_origin(t)
        if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(key, str):
            for name, field in t.model_fields.items():
                if key in (name, field.alias):
                    return field.annotation
        elif origin in (list, tuple) and isinstance(key, int):
            return typing.get_args(t)[0]
        elif origin is dict and isinstance(key, str):
            return typing.get_args(t)[1]
    return None


def _annotation_at(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    annotation: Any = model
    for key in loc:
        annotation = _step(annotation, key)
        if annotation is None:
            return None
    return annotation


def _literal_values(model: type[BaseModel], loc: tuple[Any, ...]) -> list[Any] | None:
    annotation = _annotation_at(model, loc)
    if annotation is None:
        return None
    values = [v for t in _concrete(annotation) if typing.get_origin(t) is Literal for v in typing.get_args(t)]
    return values or None


def _unknown_field(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    parent = _annotation_at(model, loc[:-1])
    allowed = sorted(
        {
            field.alias or name
            for t in _concrete(parent)
            if isinstance(t, type) and issubclass(t, BaseModel)
            for name, field in t.model_fields.items()
        }
    )
    if not allowed:
        return "unknown field"
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean '{close[0]}'?"
    return f"unknown field; allowed here: {', '.join(allowed)}"
