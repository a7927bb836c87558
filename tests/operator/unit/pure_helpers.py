"""Fixtures of the operator's pure-core tests: a FineTuneJob factory and KubeRay's
real RayJob schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest
import yaml

from finetune_operator.api import FineTuneJobSpec

from tests.support.jobs import BASE_SPEC, stored_job  # noqa: F401  (re-exported)
from tests.support.paths import RAYJOB_CRD, REPO

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

JobFactory = Callable[..., tuple[dict, FineTuneJobSpec]]


@pytest.fixture
def make_job() -> JobFactory:
    return stored_job


def example_jobs() -> list[tuple[str, dict]]:
    """Every FineTuneJob document in examples/, with a server-set uid added."""
    out = []
    for path in EXAMPLES:
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            if not document or document.get("kind") != "FineTuneJob":
                continue
            document = copy.deepcopy(document)
            document["metadata"].setdefault("namespace", "default")
            document["metadata"]["uid"] = f"uid-{path.stem}-{index}"
            out.append((f"{path.stem}#{index}", document))
    return out


def _strict(node: Any) -> Any:
    """The schema with `additionalProperties: false` wherever the API server would
    prune unknown fields, so a misspelt field fails the test instead of vanishing."""
    if isinstance(node, dict):
        node = {key: _strict(value) for key, value in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


@pytest.fixture(scope="session")
def rayjob_validator() -> jsonschema.protocols.Validator:
    crd = yaml.safe_load(RAYJOB_CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    # The API server checks these itself; the CRD schema leaves them open.
    schema["properties"]["apiVersion"] = {"const": "ray.io/v1"}
    schema["properties"]["kind"] = {"const": "RayJob"}
    schema["properties"]["metadata"] = {"type": "object"}
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)
