"""The FineTuneJob CustomResourceDefinition, generated from the pydantic models.

The models are the one source of truth; this module rewrites pydantic's JSON Schema
into the *structural* OpenAPI v3 subset the Kubernetes API server accepts: every
`$ref` inlined, optionals as plain (not required) fields instead of `anyOf`, a `type`
on every node, no `title`, and each model's `RULES` (their CEL and message) as
`x-kubernetes-validations`.
`finetune crd --write` stores the result in deploy/ and in the Helm chart.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import GenerateJsonSchema

from finetune_operator.api import (
    CATEGORIES,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    FineTuneJobSpec,
    FineTuneJobStatus,
)

CRD_FILE_NAME = f"{GROUP}_{PLURAL}.yaml"
# Where `finetune crd --write` puts the CRD, relative to the repository root.
CRD_PATHS = (Path("deploy/crds") / CRD_FILE_NAME, Path("charts/finetune-operator/crds") / CRD_FILE_NAME)

PRINTER_COLUMNS = (
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Where the job is in its life."},
    {"name": "Progress", "type": "number", "jsonPath": ".status.progress.percent",
     "description": "Percent of planned training done."},
    {"name": "Best metric", "type": "string", "jsonPath": ".status.bestMetric",
     "description": "Best value of the ranking metric so far."},
    {"name": "Model", "type": "string", "jsonPath": ".status.modelUri", "priority": 1,
     "description": "Where the fine-tuned model is."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)

# Keys pydantic emits that have no place in a structural schema.
_DROPPED_KEYS = {"title", "additionalProperties", "$defs", "const", "anyOf", "$ref"}
_SCALARS = (str, int, float, bool)
# Keys that mean the same in pydantic's JSON Schema and in a Kubernetes CRD schema.
_KEPT_KEYS = {
    "type", "format", "enum", "nullable", "required", "pattern", "minLength", "maxLength",
    "minimum", "maximum", "multipleOf", "minItems", "maxItems", "minProperties", "maxProperties",
}


class SchemaError(Exception):
    """The models use a construct a structural schema cannot express (a developer bug)."""


class _CrdJsonSchema(GenerateJsonSchema):
    """pydantic's generator, plus each model's CEL rules on that model's node."""

    def model_schema(self, schema: Any) -> dict[str, Any]:
        json_schema = super().model_schema(schema)
        if "CEL_RULES" in vars(schema["cls"]):  # the old spelling would be left out silently
            raise SchemaError(f"{schema['cls'].__name__} declares CEL_RULES; declare RULES (config.base.Rule)")
        rules = getattr(schema["cls"], "RULES", ())
        if rules:
            json_schema["x-kubernetes-validations"] = [{"rule": r.cel, "message": r.message} for r in rules]
        return json_schema


def model_schema(model: type) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_CrdJsonSchema)
    return _structural(raw, raw.get("$defs", {}), where=model.__name__)


def _inline(node: dict[str, Any], defs: dict[str, Any], where: str) -> dict[str, Any]:
    """Resolve `$ref` and optional `anyOf` into one plain node; the field's own keys
    (description, default) win over those of the referenced model."""
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**_inline(target, defs, where), **node}
    if "anyOf" in node:
        members = [m for m in node.pop("anyOf") if m.get("type") != "null"]
        if len(members) != 1:
            raise SchemaError(f"{where}: a union of several types cannot be a structural schema")
        # Null only needs to be accepted when it means something other than leaving the
        # field out, that is, when the field's default is not null.
        nullable = node.get("default") is not None
        node = {**_inline(members[0], defs, where), **node}
        if nullable:
            node["nullable"] = True
        elif node.get("default", "") is None:
            del node["default"]
    return node


def _structural(node: dict[str, Any], defs: dict[str, Any], where: str) -> dict[str, Any]:
    node = _inline(node, defs, where)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "description":
            out[key] = " ".join(str(value).split())
        elif key == "default":
            # Only scalars: object and list defaults come from default_factory and
            # are the models' business; the server needs none of them.
            if isinstance(value, _SCALARS):
                out[key] = value
        elif key == "properties":
            out[key] = {name: _structural(child, defs, f"{where}.{name}") for name, child in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs, f"{where}[]")
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # OpenAPI v3.0 (and so Kubernetes) spells an exclusive bound as a flag.
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key in _KEPT_KEYS or key.startswith("x-kubernetes-"):
            out[key] = value
        else:
            # Fail at generation rather than ship a CRD the API server refuses or,
            # worse, one that silently checks less than the models.
            raise SchemaError(f"{where}: '{key}' has no structural-schema equivalent")
    if "const" in node:
        out["enum"] = [node["const"]]
        out.setdefault("type", _json_type(node["const"]))
    if "enum" in out and out.get("type") == "string":
        # A bound on the length lets the API server estimate CEL costs on enums.
        out["maxLength"] = max(len(v) for v in out["enum"])
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        out["additionalProperties"] = _structural(extra, defs, f"{where}{{}}")
    elif extra is True or (isinstance(extra, dict) and not extra):
        # dict[str, Any] (for example a best trial's hyperparameters): values of any
        # shape, which a structural schema can only keep by not pruning them.
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "type" not in out and "x-kubernetes-preserve-unknown-fields" not in out:
        if not node or set(node) <= {"description", "default"}:
            # typing.Any (for example a search dimension's candidate values, which
            # may be numbers, strings or booleans): an untyped node is allowed only
            # when it preserves what it holds.
            out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            raise SchemaError(f"{where}: no type for {sorted(node)}")
    return _ordered(out)


# Keys a reader looks for first; the rest follow alphabetically, so diffs stay small.
_KEY_ORDER = ("description", "type", "format", "enum", "default", "nullable")


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    first = [k for k in _KEY_ORDER if k in node]
    return {k: node[k] for k in first + sorted(k for k in node if k not in _KEY_ORDER)}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def openapi_schema() -> dict[str, Any]:
    """The schema of the whole resource: apiVersion, kind, metadata, spec, status."""
    return {
        "type": "object",
        "description": "A request to fine-tune a Hugging Face model on a Ray cluster, and what became of it.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "finetune.dev/v1alpha1"},
            "kind": {"type": "string", "description": "FineTuneJob"},
            # The API server owns metadata's schema; a CRD may only leave it open.
            "metadata": {"type": "object"},
            "spec": model_schema(FineTuneJobSpec),
            "status": model_schema(FineTuneJobStatus),
        },
    }


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(list(PRINTER_COLUMNS)),
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """Block style, long strings kept on one line, no anchors for repeated nodes."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crd() -> str:
    """The CRD as the YAML committed to the repository."""
    header = "# Generated by `finetune crd --write` from the pydantic models. Do not edit.\n"
    return header + yaml.dump(build_crd(), Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)
