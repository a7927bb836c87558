"""Fixtures of the operator's pure-core tests: the FineTuneJob factory (tests/support/jobs.py)
as the `make_job` fixture, and the example manifests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from finetune_operator.api import FineTuneJobSpec

from tests.support.jobs import BASE_SPEC, stored_job  # noqa: F401  (re-exported)
from tests.support.kube_names import is_dns1035_label, is_dns1123_label  # noqa: F401  (re-exported)
from tests.support.paths import REPO

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
