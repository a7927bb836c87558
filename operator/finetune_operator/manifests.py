"""Loading FineTuneJob manifests and turning every mistake in them into a plain line.

`finetune validate`, `finetune run` and the operator all parse manifests here, so a
job that validates on a laptop is the job the operator accepts. Errors name the field
by its YAML path (`spec.resources.tolerations[0].effect`) and say what is allowed;
pydantic's own wording and tracebacks never reach the user.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml
from pydantic import BaseModel, ValidationError

from finetune_operator import plain_yaml
from finetune_operator.api import API_VERSION, KIND, FineTuneJob
from finetune_operator.error_words import error_message, show_value, type_name
from finetune_operator.errors import UserError

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
            f"(got {type_name(d)})",
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
        raise ManifestError(
            [Problem(source, "", f"a manifest must be a mapping (got {type_name(document)})")])
    identity = [
        Problem(source, key, f"must be {expected} (got {show_value(document.get(key))})")
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
        item = (format_path(loc), error_message(error, model, loc))
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
