"""What a Kubernetes API server does with a FineTuneJob, reproduced with real parts.

The API server defaults, validates against the CRD's structural schema, then runs the
CEL rules. Here: defaults from the schema, `jsonschema` (Draft 7) on the schema with
the OpenAPI-only keywords translated, and `celpy` evaluating every
`x-kubernetes-validations` rule on the node it belongs to. The tests use it to check
that the CRD accepts and rejects what the pydantic models do.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Iterator

import celpy
import jsonschema
from celpy import celtypes

from finetune_operator.manifests import format_path


# ------------------------------------------------------------------ defaulting


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """A copy of `value` with schema defaults filled in where the parent object exists,
    as the API server defaults before it validates."""
    value = copy.deepcopy(value)
    _default_in_place(value, schema)
    return value


def _default_in_place(value: Any, schema: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                _default_in_place(value[name], child)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for child_value in value.values():
                _default_in_place(child_value, extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default_in_place(item, schema["items"])


# ------------------------------------------------------------ schema validation


def to_draft7(schema: dict[str, Any]) -> dict[str, Any]:
    """Translate the OpenAPI v3.0 / Kubernetes dialect into JSON Schema Draft 7.

    `nullable` becomes a `null` type, boolean exclusive bounds become numeric ones,
    `x-kubernetes-list-type: set` becomes `uniqueItems`, and objects with declared
    properties reject unknown fields, as kubectl's strict field validation does.
    """
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: to_draft7(child) for name, child in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_draft7(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if value:
                out[key] = schema[bound]
        elif key in ("minimum", "maximum"):
            exclusive = "exclusiveMinimum" if key == "minimum" else "exclusiveMaximum"
            if not schema.get(exclusive):
                out[key] = value
        elif key == "nullable":
            continue
        elif key.startswith("x-kubernetes-"):
            if key == "x-kubernetes-list-type" and value == "set":
                out["uniqueItems"] = True
        else:
            out[key] = value
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def _schema_errors(value: Any, schema: dict[str, Any]) -> list[jsonschema.ValidationError]:
    return list(jsonschema.Draft7Validator(to_draft7(schema)).iter_errors(value))


def schema_problems(value: Any, schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, message) for each place `value` breaks the schema."""
    problems = []
    for error in _schema_errors(value, schema):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            declared = set(error.schema.get("properties", {}))
            problems += [(format_path(path + (k,)), "unknown field") for k in error.instance if k not in declared]
        elif error.validator == "required":
            problems += [
                (format_path(path + (k,)), "is required") for k in error.validator_value if k not in error.instance
            ]
        else:
            problems.append((format_path(path), error.message))
    return problems


# ------------------------------------------------------------------------- CEL


def to_cel(value: Any, schema: dict[str, Any]) -> Any:
    """A JSON value as the CEL value the API server builds from it: `number` fields are
    doubles even when written as 1, `integer` fields are ints."""
    kind = schema.get("type")
    if kind is None:
        return celpy.json_to_cel(value)
    if kind == "object":
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return celtypes.MapType(
            {
                celtypes.StringType(k): to_cel(v, properties.get(k) or (extra if isinstance(extra, dict) else {}))
                for k, v in value.items()
            }
        )
    if kind == "array":
        return celtypes.ListType([to_cel(v, schema.get("items", {})) for v in value])
    if kind == "integer":
        return celtypes.IntType(value)
    if kind == "number":
        return celtypes.DoubleType(float(value))
    if kind == "boolean":
        return celtypes.BoolType(value)
    return celtypes.StringType(value)


@functools.lru_cache(maxsize=None)
def _program(rule: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def evaluate_rule(rule: str, value: Any, schema: dict[str, Any]) -> bool:
    """Whether `rule` holds for `value`; an evaluation error counts as a failure, as it
    does on the API server."""
    try:
        return bool(_program(rule).evaluate({"self": to_cel(value, schema)}))
    except celpy.CELEvalError:
        return False


def _nodes(value: Any, schema: dict[str, Any], path: tuple[Any, ...]) -> Iterator[tuple[tuple, Any, dict]]:
    """Every (path, value, schema) pair where the value has the schema's type."""
    kind = schema.get("type")
    if kind == "object" and isinstance(value, dict):
        yield path, value, schema
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            child_schema = properties.get(key) or (extra if isinstance(extra, dict) else None)
            if child_schema is not None:
                yield from _nodes(child, child_schema, path + (key,))
    elif kind == "array" and isinstance(value, list):
        yield path, value, schema
        for index, item in enumerate(value):
            yield from _nodes(item, schema.get("items", {}), path + (index,))


def cel_problems(value: Any, schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, message) for each CEL rule that fails on the node carrying it."""
    problems = []
    for path, node_value, node_schema in _nodes(value, schema, ()):
        for validation in node_schema.get("x-kubernetes-validations", []):
            if not evaluate_rule(validation["rule"], node_value, node_schema):
                problems.append((format_path(path), validation["message"]))
    return problems


def api_server_problems(value: Any, schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Default, then schema-validate, then run CEL: the API server's order. Like the
    server, CEL is skipped when a value has the wrong type (a "blocking" error)."""
    defaulted = apply_defaults(value, schema)
    problems = schema_problems(defaulted, schema)
    if any(error.validator == "type" for error in _schema_errors(defaulted, schema)):
        return problems
    return problems + cel_problems(defaulted, schema)
