"""The one RayJob validator: KubeRay v1.7.0's CRD schema, strict.

The schema is the `v1` openAPIV3Schema of `ray.io_rayjobs.yaml` in the shared
kuberay-crds folder (tests/support/paths.py; never copied into the tree). It is made
strict before use: wherever the API server would prune an unknown field (an object
with `properties` and no `x-kubernetes-preserve-unknown-fields`), the field is an
error instead, so a misspelt field fails the test rather than vanishing on the server.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import jsonschema
import yaml

from tests.support.kube_schema import openapi_to_jsonschema
from tests.support.paths import RAYJOB_CRD


def strict_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """A Kubernetes openAPIV3Schema as a Draft 4 JSON Schema that rejects the fields
    the API server would prune."""
    return openapi_to_jsonschema(_forbid_unknown(openapi))


def _forbid_unknown(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: _forbid_unknown(value) for key, value in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_forbid_unknown(item) for item in node]
    return node


@functools.lru_cache(maxsize=1)
def _rayjob_openapi() -> dict[str, Any]:
    crd = next(doc for doc in yaml.safe_load_all(RAYJOB_CRD.read_text()) if doc)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]


def rayjob_openapi_schema() -> dict[str, Any]:
    """KubeRay's RayJob `v1` openAPIV3Schema as the CRD has it (CEL rules included), a copy."""
    return copy.deepcopy(_rayjob_openapi())


@functools.lru_cache(maxsize=1)
def rayjob_validator() -> jsonschema.Draft4Validator:
    """A validator for a whole RayJob object (the operator's part of it: identity,
    metadata, spec)."""
    schema = strict_schema(_rayjob_openapi())
    # The API server checks these itself; the CRD schema leaves them open.
    schema["properties"]["apiVersion"] = {"enum": ["ray.io/v1"]}
    schema["properties"]["kind"] = {"enum": ["RayJob"]}
    schema["properties"]["metadata"] = {"type": "object"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return jsonschema.Draft4Validator(schema)


def rayjob_errors(rayjob: dict[str, Any]) -> list[str]:
    """'path: message' for each way `rayjob` breaks the schema, in path order. Its
    `status` (KubeRay's, or a test's stand-in for it) is left out."""
    body = {key: value for key, value in rayjob.items() if key != "status"}
    errors = sorted(rayjob_validator().iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]


def assert_valid_rayjob(rayjob: dict[str, Any]) -> None:
    errors = rayjob_errors(rayjob)
    assert not errors, "RayJob is not valid against KubeRay v1.7.0's CRD: " + "; ".join(errors[:10])
