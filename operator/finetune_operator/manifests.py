"""Loading FineTuneJob manifests and turning every mistake in them into a plain line.

`finetune validate`, `finetune run` and the operator all parse manifests here, so a
job that validates on a laptop is the job the operator accepts. Errors name the field
by its YAML path (`spec.resources.tolerations[0].effect`) and say what is allowed;
pydantic's own wording and tracebacks never reach the user.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ValidationError

from finetune_operator.api import (
    API_VERSION,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    KIND,
    QUANTITY_PATTERN,
    FineTuneJob,
)
from finetune_operator import plain_yaml
from finetune_operator.errors import UserError

# Patterns whose regular expression would mean little to a reader, in words.
_PATTERN_WORDS = {
    DNS_SUBDOMAIN_PATTERN: "a lowercase DNS name (letters, digits, '-' and '.', starting and ending "
    "with a letter or digit)",
    DNS_LABEL_PATTERN: "a lowercase DNS label (letters, digits and '-', starting and ending with a "
    "letter or digit)",
    QUANTITY_PATTERN: "a Kubernetes quantity such as 2, 500m or 8Gi",
    r"^https?://[^\s/]+(/.*)?$": "an http:// or https:// URL",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one document: where (a YAML field path) and what."""

    source: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}" if self.path else f"{self.source}: {self.message}"


class ManifestError(UserError):
    """A manifest that cannot be used; carries every problem found, one per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# ------------------------------------------------------------------------ loading


def _yaml_error_problem(source: str, err: yaml.YAMLError, text: str = "") -> Problem:
    if isinstance(err, yaml.reader.ReaderError):  # a control character, found by position
        before = text[:err.position]
        line, column = before.count("\n") + 1, err.position - (before.rfind("\n") + 1) + 1
        character = f"{err.character:#06x}" if isinstance(err.character, int) else repr(err.character)
        return Problem(source, "", f"invalid YAML at line {line}, column {column}: the control character "
                                   f"{character} is not allowed in YAML text (quote it as an escape, e.g. "
                                   f"\"\\x{err.character if isinstance(err.character, int) else 0:02x}\")")
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    what = getattr(err, "problem", None) or str(err)
    if mark is not None:
        text = f"invalid YAML at {_where(mark)}: {what}"
        context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context and context_mark is not None and context_mark is not mark:
            text += f" ({context} that starts at {_where(context_mark)})"
        return Problem(source, "", text)
    return Problem(source, "", f"invalid YAML: {what}")


def _where(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def parse_documents(text: str, source: str) -> list[tuple[int, dict[str, Any]]]:
    """The mapping documents of a YAML stream as (index in the stream, document).

    Documents hold plain JSON values only (`plain_yaml`), as the API server would.
    Empty documents (a stray `---`) are skipped; a stream with none left, or a document
    that is not a mapping, is an error.
    """
    try:
        nodes = plain_yaml.compose_documents(text)
    except yaml.YAMLError as err:
        raise ManifestError([_yaml_error_problem(source, err, text)]) from None
    present, problems = [], []
    indexed = [(i, node) for i, node in enumerate(nodes) if not plain_yaml.is_empty(node)]
    for i, node in indexed:
        try:
            present.append((i, plain_yaml.to_plain(node)))
        except plain_yaml.PlainYamlError as err:
            label = document_label(source, i, len(indexed))
            problems.append(Problem(label, format_path(err.loc), err.message))
    if problems:
        raise ManifestError(problems)
    if not present:
        raise ManifestError([Problem(source, "", "the file is empty; expected a FineTuneJob manifest")])
    problems = [
        Problem(
            document_label(source, i, len(present)),
            "",
            f"a manifest must be a mapping with apiVersion, kind, metadata and spec "
            f"(got {_type_name(d)})",
        )
        for i, d in present
        if not isinstance(d, dict)
    ]
    if problems:
        raise ManifestError(problems)
    return present


def load_manifests(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Read a YAML file of one or more documents; see `parse_documents`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError([Problem(str(path), "", "no such file")]) from None
    except IsADirectoryError:
        raise ManifestError([Problem(str(path), "", "is a directory, not a manifest file")]) from None
    except UnicodeDecodeError as err:
        problem = f"is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})"
        raise ManifestError([Problem(str(path), "", problem)]) from None
    except OSError as err:
        raise ManifestError([Problem(str(path), "", f"cannot read the file: {err}")]) from None
    return parse_documents(text, str(path))


def document_label(source: str, index: int, count: int) -> str:
    """`job.yaml`, or `job.yaml[2]` for the document at stream index 2 (counted from 0,
    like list indexes in field paths) when the file holds `count` > 1 documents."""
    return f"{source}[{index}]" if count > 1 else source


def load_jobs(path: str | Path) -> list[FineTuneJob]:
    """Every FineTuneJob in a file, validated; all problems of all documents at once."""
    return _jobs(load_manifests(path), str(path))


def parse_jobs(text: str, source: str) -> list[FineTuneJob]:
    """Every FineTuneJob in a YAML stream (for example standard input)."""
    return _jobs(parse_documents(text, source), source)


def _jobs(documents: list[tuple[int, dict[str, Any]]], source: str) -> list[FineTuneJob]:
    jobs: list[FineTuneJob] = []
    problems: list[Problem] = []
    for index, document in documents:
        try:
            jobs.append(parse_job(document, document_label(source, index, len(documents))))
        except ManifestError as err:
            problems.extend(err.problems)
    if problems:
        raise ManifestError(problems)
    return jobs


# ---------------------------------------------------------------------- validation


def parse_job(document: dict[str, Any], source: str) -> FineTuneJob:
    """Validate one manifest document; raise ManifestError listing every problem.

    Validation is strict, as the Kubernetes API server is: `"16"` is not an integer.
    A document of another apiVersion or kind is reported as that alone, because its
    other fields would only add noise.
    """
    if not isinstance(document, dict):
        raise ManifestError([Problem(source, "", f"a manifest must be a mapping (got {_type_name(document)})")])
    identity = [
        Problem(source, key, f"must be {expected} (got {_show(document.get(key))})")
        if key in document
        else Problem(source, key, f"is required; expected {expected}")
        for key, expected in (("apiVersion", API_VERSION), ("kind", KIND))
        if document.get(key) != expected
    ]
    if identity:
        raise ManifestError(identity)
    document = as_the_server_reads(document)
    too_big = [Problem(source, format_path(loc), f"{value} does not fit in 64 bits; Kubernetes stores whole "
                                                 f"numbers from {INT64_MIN} to {INT64_MAX}")
               for loc, value in _huge_integers(document)]
    if too_big:
        raise ManifestError(too_big)
    try:
        text = json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as err:  # plain_yaml reads only JSON values; this is a backstop
        problem = f"holds a value JSON cannot carry ({err}); {plain_yaml.ALLOWED}"
        raise ManifestError([Problem(source, "", problem)]) from None
    try:
        return FineTuneJob.model_validate_json(text, strict=True)
    except ValidationError as err:
        raise ManifestError(
            [Problem(source, path, message) for path, message in describe_errors(err, FineTuneJob)]
        ) from None


def describe_errors(err: ValidationError, model: type[BaseModel]) -> list[tuple[str, str]]:
    """(YAML field path, plain message) for each error pydantic found in `model`."""
    seen: set[tuple[str, str]] = set()
    described = []
    for error in err.errors(include_url=False):
        loc = tuple(error["loc"])
        item = (format_path(loc), _message(error, model, loc))
        if item not in seen:
            seen.add(item)
            described.append(item)
    return described


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@functools.lru_cache(maxsize=1)
def _resource_schema() -> dict[str, Any]:
    from finetune_operator.crd import openapi_schema

    return openapi_schema()


def as_the_server_reads(document: dict[str, Any]) -> dict[str, Any]:
    """The manifest as the API server validates it, so that `finetune validate` and
    the server agree: a null field the schema does not mark `nullable` is dropped (the
    server prunes it before validating: `weightDecay: null` means "not set"), and a
    number with nothing after the point (`3.0`, `-0.0`) counts as the whole number it
    is, as the server's integer check allows."""
    return _server_view(document, _resource_schema())


def _server_view(value: Any, schema: Optional[dict[str, Any]]) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() \
            and (schema or {}).get("type") == "integer" and INT64_MIN <= value <= INT64_MAX:
        return int(value)
    if isinstance(value, dict) and schema is not None and schema.get("type") == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        out = {}
        for key, child in value.items():
            child_schema = (properties or {}).get(key) if properties is not None and key in properties \
                else (extra if isinstance(extra, dict) else None)
            known = (properties is not None and key in properties) or isinstance(extra, dict)
            if child is None and known and not (child_schema or {}).get("nullable"):
                continue
            out[key] = _server_view(child, child_schema)
        return out
    if isinstance(value, list) and schema is not None and isinstance(schema.get("items"), dict):
        return [_server_view(item, schema["items"]) for item in value]
    return value


def _huge_integers(document: Any) -> list[tuple[tuple[Any, ...], int]]:
    """(path, value) of every whole number outside int64, which the API server cannot
    read as an integer (JSON and Python can carry them). Iterative: the document may
    come from the API server, nested as deep as it allows."""
    found, pending = [], [((), document)]
    while pending:
        loc, value = pending.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            found.append((loc, value))
        elif isinstance(value, dict):
            pending.extend(((*loc, key), child) for key, child in value.items())
        elif isinstance(value, list):
            pending.extend(((*loc, index), child) for index, child in enumerate(value))
    return sorted(found, key=lambda item: format_path(item[0]))


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(loc: Iterable[Any]) -> str:
    """`('spec', 'resources', 'tolerations', 0, 'effect')` -> `spec.resources.tolerations[0].effect`.

    Map keys other than plain names (search-space paths with dots, empty keys, spaces,
    control characters) are quoted in brackets, escaped, so the path stays one line
    and says exactly which key was meant.
    """
    text = ""
    for part in loc:
        if part == "[key]":
            # pydantic's marker for "the key itself, not its value"; the key is
            # already the last part of the path.
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _PLAIN_KEY.match(str(part)):
            text += f"[{str(part)!r}]"
        else:
            text += f".{part}" if text else str(part)
    return text


# ------------------------------------------------------------------ message texts


def _message(error: dict[str, Any], model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = _show(error.get("input"))
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


def _show(value: Any) -> str:
    """A short rendering of a user's value: strings quoted, mappings and lists by type."""
    if isinstance(value, (dict, list)):
        return _type_name(value)
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


def _type_name(value: Any) -> str:
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
