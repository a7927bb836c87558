"""Fixtures of the operator's pure-core tests: the FineTuneJob factory (tests/support/jobs.py)
as the `make_job` fixture, and the example manifests."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from finetune_operator.api import FineTuneJobSpec

from tests.support.jobs import BASE_SPEC, stored_job  # noqa: F401  (re-exported)
from tests.support.paths import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

JobFactory = Callable[..., tuple[dict, FineTuneJobSpec]]

# Kubernetes' own name rules (apimachinery validation), as the tests' oracle.
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_dns1035_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1035.match(name))


def is_dns1123_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1123_LABEL.match(name))


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
