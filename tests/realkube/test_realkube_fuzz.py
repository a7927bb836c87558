"""The bad-input suite against the real server: every mutated manifest of
tests/api/fuzz_manifests.py that JSON can carry is sent to the real kube-apiserver
(`dryRun=All`, `fieldValidation=Strict`, as `kubectl apply` does), and the server and
`finetune validate` must agree on it:

- nothing the server refuses may pass `finetune validate` (the offline check would
  let through what `kubectl apply` then refuses);
- what `finetune validate` refuses and the server accepts must be a rule the CRD's
  schema and CEL cannot express, from the list below, each with its reason.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.support.real_kube import RealKube

sys.path.insert(0, str(REPO / "tests" / "api"))
from fuzz_manifests import structured, write  # noqa: E402
from test_api_fuzz import validate  # noqa: E402

pytestmark = pytest.mark.kube

NAMESPACE = "fuzz"

# Refusals of `finetune validate` that no CRD schema or CEL rule can make, and why.
OFFLINE_ONLY: list[tuple[str, str]] = [
    (r"values must be numbers, strings or booleans",
     "a structural schema has no 'number or string or boolean' type, so search-space values are left open"),
    (r"does not fit in 64 bits",
     "where a number (not an integer) is allowed the server keeps a huge whole number as a float"),
    (r"nested more than \d+ levels deep",
     "inside the open search-space values the server allows any depth; no value of ours needs it"),
    (r"values is required for choice and grid, and allowed only there",
     "which keys a dimension needs depends on its type; the CEL rule for it was removed because the "
     "real server refused `has(self.values)` (see tests/README.md)"),
]


def post(kube: RealKube, manifest: dict):
    metadata = manifest.get("metadata") if isinstance(manifest.get("metadata"), dict) else {}
    body = {**manifest, "metadata": {**metadata, "namespace": NAMESPACE}}
    return kube.request("POST", f"/apis/finetune.dev/v1alpha1/namespaces/{NAMESPACE}/finetunejobs", body,
                        fieldValidation="Strict", dryRun="All")


@pytest.fixture
def deep_json():
    """Room for json.dumps to encode the mutants nested 1,200 levels deep."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 50_000))
    yield
    sys.setrecursionlimit(limit)


def test_the_server_and_finetune_validate_agree_on_every_mutant(real_kube: RealKube, tmp_path: Path,
                                                                deep_json) -> None:
    real_kube.create_namespace(NAMESPACE)
    # The namespace travels in the URL, which the request sets for every mutant.
    mutants = [m for m in structured() if m.json_safe() and not m.path.startswith("metadata.namespace")]
    assert len(mutants) > 900
    lax, strict_unexplained = [], []
    for mutant in mutants:
        response = post(real_kube, mutant.manifest)
        assert response.status_code in (201, 400, 422), f"{mutant.id}: {response.status_code} {response.text[:500]}"
        code, output = validate(write(tmp_path, mutant.id, mutant.manifest))
        server_ok, ours_ok = response.status_code == 201, code == 0
        if ours_ok and not server_ok:
            lax.append(f"{mutant.id} ({mutant.path}): the server says {response.json().get('message', '')[:300]}")
        elif server_ok and not ours_ok:
            lines = [line.split(": ", 1)[1] for line in output.splitlines()]
            if not all(any(re.search(pattern, line) for pattern, _ in OFFLINE_ONLY) for line in lines):
                strict_unexplained.append(f"{mutant.id} ({mutant.path}): {lines}")
    assert not lax, f"{len(lax)} refused by the server, passed offline:\n" + "\n".join(lax[:15])
    assert not strict_unexplained, (f"{len(strict_unexplained)} refused offline only, by no listed rule:\n"
                                    + "\n".join(strict_unexplained[:25]))
