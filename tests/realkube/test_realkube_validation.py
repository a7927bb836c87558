"""The real kube-apiserver judges the table of bad manifests (tests/api/api_cases.py)
with our CRD's schema and CEL rules, and says what `finetune validate` says offline.

For CEL rules the server returns our own `message`, wrapped as `Invalid value: <message>`:
the offline line must start with it. For OpenAPI schema checks (bounds, enums, types,
patterns, required, unknown fields) the wording is Kubernetes', so `SCHEMA_WORDING`
maps each server phrase to the words of ours it stands for, and the offline line must
contain them. A server message neither rule explains fails the test.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.paths import FINETUNE_CRD, REPO
from tests.support.real_kube import RealKube

sys.path.insert(0, str(REPO / "tests" / "api"))
from api_cases import BAD_CASES, base_job  # noqa: E402

pytestmark = pytest.mark.kube

NAMESPACE = "validation"
CRD_CASES = [case for case in BAD_CASES if case.crd is True]

# The server's phrase (a regex over the cause's message) -> what ours says, built from
# the match. Kubernetes' phrasing of each OpenAPI check, and ours for the same check.
_TYPES = {"number": "must be a number", "integer": "must be an integer", "boolean": "must be true or false",
          "array": "must be a list", "string": "must be a string", "object": "must be a mapping"}
# Our patterns, and the words our pydantic error uses for each.
PATTERN_WORDS = {
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$": "lowercase DNS name",
    r"^https?://[^\s/]+(/.*)?$": "http:// or https:// URL",
    r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$": "Kubernetes quantity",
}
SCHEMA_WORDING: list[tuple[str, object]] = [
    (r"in body should be greater than or equal to (\S+)$", lambda m: f"must be >= {m[1]}"),
    (r"in body should be greater than (\S+)$", lambda m: f"must be > {m[1]}"),
    (r"in body should be less than or equal to (\S+)$", lambda m: f"must be <= {m[1]}"),
    (r"in body should be less than (\S+)$", lambda m: f"must be < {m[1]}"),
    (r"in body should have at least (\d+) (?:items|properties)$", lambda m: f"at least {m[1]} entries"),
    (r"in body should be at least 1 chars long$", lambda m: "must not be empty"),
    (r"in body must be of type (\w+)", lambda m: _TYPES[m[1]]),
    (r"in body should match '(.*)'$", lambda m: PATTERN_WORDS[m[1]]),
    (r'^Unsupported value: "[^"]*": supported values: (.*)$',
     lambda m: ", ".join(re.findall(r'"([^"]*)"', m[1]))),
    (r"^Required value$", lambda m: "is required"),
    (r"^Duplicate value: ", lambda m: "must be unique"),
    (r'^strict decoding error: unknown field "[^"]*"$', lambda m: "unknown field"),
]
# Causes that say nothing of their own: a follow-up note, and the maxLength every enum
# carries for CEL's cost estimate (the enum's own cause sits beside it).
NOISE = (r"some validation rules were not checked", r"^Checked value must be of type",
         r"^Too long: may not be more than \d+ bytes$")


def canonical(path: str) -> str:
    """One spelling for field paths: map keys as dotted keys (`a['x.y']`, `a[x.y]` -> `a.x.y`)."""
    return re.sub(r"\['([^']*)'\]|\[([^\]\d][^\]]*)\]", lambda m: "." + (m[1] or m[2]), path)


def ours_for(server_message: str) -> str:
    """The words of our message that a server cause's message stands for."""
    for pattern, words in SCHEMA_WORDING:
        match = re.search(pattern, server_message)
        if match:
            return words(match)  # type: ignore[operator]
    cel = re.fullmatch(r"Invalid value: (.+)", server_message, flags=re.S)
    assert cel and not re.match(r'["\d-]', cel[1]), f"no mapping for the server's message {server_message!r}"
    return cel[1]


def server_causes(response) -> list[tuple[str, str]]:
    """(canonical field, message) of each cause of a refusal, noise left out."""
    body = response.json()
    if response.status_code == 400:  # unknown fields under fieldValidation=Strict
        found = re.search(r'(strict decoding error: unknown field "([^"]*)")', body["message"])
        assert found, body["message"]
        return [(canonical(found[2]), found[1])]
    assert response.status_code == 422, response.text
    causes = [(canonical(c.get("field", "")), c["message"]) for c in body["details"]["causes"]]
    return [(field, message) for field, message in causes if not any(re.search(n, message) for n in NOISE)]


def offline_line(case, tmp_path: Path) -> str:
    """What `finetune validate` prints for the case at its field, without the file prefix."""
    from finetune_operator.cli import main

    path = tmp_path / f"{case.id}.yaml"
    path.write_text(yaml.safe_dump(case.manifest()))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["validate", str(path)]) == 1
    prefix = f"{path}: {case.path}: "
    lines = [line[len(prefix):] for line in out.getvalue().splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, out.getvalue()
    return lines[0]


@pytest.fixture(scope="module")
def kube(real_kube: RealKube) -> RealKube:
    real_kube.create_namespace(NAMESPACE)
    return real_kube


def post(kube: RealKube, manifest: dict):
    manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": NAMESPACE}}
    return kube.request("POST", f"/apis/finetune.dev/v1alpha1/namespaces/{NAMESPACE}/finetunejobs", manifest,
                        fieldValidation="Strict", dryRun="All")


def test_the_server_accepts_the_minimal_job_and_every_example(kube: RealKube) -> None:
    from finetune_operator.manifests import load_manifests

    assert post(kube, base_job()).status_code == 201
    for example in sorted((REPO / "examples").glob("*.yaml")):
        for _, document in load_manifests(example):
            response = post(kube, document)
            assert response.status_code == 201, f"{example.name}: {response.text}"


@pytest.mark.parametrize("case", CRD_CASES, ids=lambda case: case.id)
def test_server_and_finetune_validate_say_the_same(case, kube: RealKube, tmp_path: Path) -> None:
    causes = server_causes(post(kube, case.manifest()))
    field = canonical(case.crd_path or case.path)
    at_field = [message for path, message in causes if path == field or path.startswith(field + "[")]
    assert at_field, f"the server reported {causes}, nothing at {field}"
    ours = offline_line(case, tmp_path)
    expected = [ours_for(message) for message in at_field]
    assert any(words in ours for words in expected), f"server {at_field} -> {expected}; offline: {ours!r}"
    cel = [words for message, words in zip(at_field, expected)
           if not any(re.search(pattern, message) for pattern, _ in SCHEMA_WORDING)]
    if cel:
        # A CEL rule: the server's message is ours, and ours adds only the particulars.
        # (The server reports every broken rule at a node, pydantic the first.)
        assert any(ours.startswith(words) for words in cel), f"CEL says {cel}, finetune validate says {ours!r}"


def test_the_wording_table_covers_every_pattern_of_the_crd() -> None:
    patterns = set(re.findall(r"pattern: (.+)", FINETUNE_CRD.read_text()))
    assert {yaml.safe_load(p) for p in patterns} <= set(PATTERN_WORDS)


def test_pydantic_only_cases_pass_the_real_server(kube: RealKube) -> None:
    # The table says which rules the CRD cannot express; the server must agree they pass.
    for case in BAD_CASES:
        if case.crd is True or case.id in {"name-missing", "name-invalid", "api-version-wrong", "kind-wrong"}:
            continue
        response = post(kube, case.manifest())
        assert response.status_code == 201, f"{case.id}: {response.text}"
