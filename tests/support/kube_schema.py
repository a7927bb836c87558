"""What the API server does with a custom resource's structural schema.

Pruning of unknown fields, defaulting, JSON Schema validation (OpenAPI v3 keywords
translated to Draft 4) and the CRD's CEL rules (`x-kubernetes-validations`, with
cel-python). Violations come back as (field path, message) pairs, the shape of a
422 Status's `details.causes`.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Optional

JSON = dict[str, Any]


def openapi_to_jsonschema(schema: JSON) -> JSON:
    """A Kubernetes openAPIV3Schema as a Draft 4 JSON Schema.

    Translates `nullable`, `x-kubernetes-int-or-string`; drops the other Kubernetes
    extensions (pruning and CEL are handled separately).
    """
    out: JSON = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: openapi_to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = openapi_to_jsonschema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [openapi_to_jsonschema(sub) for sub in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "description", "format", "default",
                                                          "example", "externalDocs", "title"):
            continue
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        # Structural schemas spell int-or-string as anyOf [integer, string]; the
        # type list covers it.
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if schema.get("nullable"):
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def prune_and_default(value: Any, schema: Optional[JSON]) -> Any:
    """Drop fields the structural schema does not know and fill in defaults.

    This is what the API server does to custom resources before storing them.
    """
    if schema is None or value is None:
        return value
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        embedded = schema.get("x-kubernetes-embedded-resource", False)
        for key in list(value):
            if properties and key in properties:
                value[key] = prune_and_default(value[key], properties[key])
            elif isinstance(additional, dict):
                value[key] = prune_and_default(value[key], additional)
            elif additional is True or preserve or (embedded and key in ("apiVersion", "kind", "metadata")):
                continue
            else:
                del value[key]
        for key, sub in (properties or {}).items():
            if key not in value and "default" in sub:
                value[key] = prune_and_default(copy.deepcopy(sub["default"]), sub)
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune_and_default(item, schema["items"]) for item in value]
    return value


def field_path(parts: Iterable[Any]) -> str:
    """A JSON path as the API server prints it: spec.items[0].name."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def collect_cel_rules(schema: JSON, path: tuple = ()) -> list[tuple[tuple, JSON]]:
    """Every x-kubernetes-validations rule with the schema path it applies at.

    A path element "*" stands for every array item or map value.
    """
    found = [(path, rule) for rule in schema.get("x-kubernetes-validations") or []]
    for name, sub in (schema.get("properties") or {}).items():
        found += collect_cel_rules(sub, path + (name,))
    if isinstance(schema.get("items"), dict):
        found += collect_cel_rules(schema["items"], path + ("*",))
    if isinstance(schema.get("additionalProperties"), dict):
        found += collect_cel_rules(schema["additionalProperties"], path + ("*",))
    return found


def values_at(document: Any, path: tuple, walked: tuple = ()) -> Iterable[tuple[tuple, Any]]:
    """The values a schema path (with "*" wildcards) reaches in a document."""
    if not path:
        yield walked, document
        return
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(document, list):
            for index, item in enumerate(document):
                yield from values_at(item, rest, walked + (index,))
        elif isinstance(document, dict):
            for key, item in document.items():
                yield from values_at(item, rest, walked + (key,))
    elif isinstance(document, dict) and head in document:
        yield from values_at(document[head], rest, walked + (head,))


class SchemaChecker:
    """Validation of one custom resource version: JSON Schema plus CEL rules."""

    def __init__(self, schema: JSON) -> None:
        import jsonschema

        self.schema = schema
        body = copy.deepcopy(schema)
        # metadata is validated by the server itself, never by the CRD's schema.
        body.get("properties", {}).pop("metadata", None)
        self.validator = jsonschema.Draft4Validator(openapi_to_jsonschema(body))
        self.cel_programs: list[tuple[tuple, JSON, Any]] = []
        self.cel_skipped: list[str] = []
        rules = collect_cel_rules(schema)
        if rules:
            import celpy

            environment = celpy.Environment()
            for path, rule in rules:
                try:
                    program = environment.program(environment.compile(rule["rule"]))
                except Exception as err:  # noqa: BLE001 - unsupported K8s CEL functions
                    self.cel_skipped.append(f"{field_path(path)}: {rule['rule']} ({err})")
                    continue
                self.cel_programs.append((path, rule, program))

    def errors(self, document: JSON, old: Optional[JSON] = None) -> list[tuple[str, str]]:
        """(field path, message) for each violation; CEL runs only on schema-valid documents.

        Transition rules (those using `oldSelf`) run only on updates where the old
        object has a value at the same place, as on a real API server.
        """
        causes = []
        for error in sorted(self.validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
            causes.append((field_path(error.absolute_path) or "<root>", error.message))
        if causes or not self.cel_programs:
            return causes
        typed = typed_for_cel(document, self.schema)
        typed_old = typed_for_cel(old, self.schema) if old is not None else None
        for path, rule, program in self.cel_programs:
            transition = "oldSelf" in rule["rule"]
            for where, value in values_at(typed, path):
                old_value = _MISSING
                if transition:
                    old_value = value_at(typed_old, where)
                    if old_value is _MISSING:
                        continue
                causes += self._run_rule(where, value, old_value, rule, program)
        return causes

    @staticmethod
    def _run_rule(where: tuple, value: Any, old_value: Any, rule: JSON, program: Any) -> list[tuple[str, str]]:
        import celpy

        activation = {"self": celpy.json_to_cel(value)}
        if old_value is not _MISSING:
            activation["oldSelf"] = celpy.json_to_cel(old_value)
        place = field_path(where) or "<root>"
        try:
            result = program.evaluate(activation)
        except Exception as err:  # noqa: BLE001 - CEL runtime errors become 422s
            return [(place, f"failed to evaluate rule {rule['rule']!r}: {err}")]
        if isinstance(result, Exception):
            return [(place, f"failed to evaluate rule {rule['rule']!r}: {result}")]
        if not bool(result):
            if rule.get("fieldPath"):
                place = ((place if place != "<root>" else "") + rule["fieldPath"]).lstrip(".")
            return [(place, rule.get("message") or f"Invalid value: failed rule: {rule['rule']}")]
        return []


_MISSING = object()


def value_at(document: Any, where: tuple) -> Any:
    """The value at a concrete path (keys and indexes), or _MISSING."""
    node = document
    for step in where:
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return _MISSING
    return node


def typed_for_cel(value: Any, schema: Optional[JSON]) -> Any:
    """A copy with whole numbers in `type: number` fields made floats.

    JSON does not tell 1 from 1.0; the API server types CEL values by the schema,
    so `self.momentum > 0.0` works when the user wrote `momentum: 0`.
    """
    if schema is None:
        return value
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        return {key: typed_for_cel(item, properties.get(key, additional if isinstance(additional, dict) else None))
                for key, item in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        return [typed_for_cel(item, items if isinstance(items, dict) else None) for item in value]
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
