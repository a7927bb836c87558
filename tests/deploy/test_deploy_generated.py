"""The generated deploy files match their sources, and the plain manifests install."""

from __future__ import annotations

import pytest
import yaml

from deploy_support import DEPLOY, ROOT, generate, render, the, validate_object


def test_generated_files_are_up_to_date() -> None:
    """Fails when permissions.py, the chart or its alert rules changed without
    `python deploy/generate.py`."""
    expected = generate.expected_files()
    assert set(expected) == {generate.RBAC_RULES, generate.ALERTS, generate.MANIFESTS}, \
        "files/rbac-rules.yaml is stale: run python deploy/generate.py"
    for path, text in expected.items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} drifted: run python deploy/generate.py"


def test_check_mode_reports_drift_and_passes_when_clean(capsys) -> None:
    assert generate.main(["--check"]) == 0
    original = generate.ALERTS.read_text()
    try:
        generate.ALERTS.write_text(original.replace("for: 30m", "for: 31m"))
        assert generate.main(["--check"]) == 1
        assert "deploy/prometheus/alerts.yaml is out of date" in capsys.readouterr().err
    finally:
        generate.ALERTS.write_text(original)


def test_kustomization_lists_the_crds_and_the_manifests() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    crds = sorted(f"crds/{p.name}" for p in (DEPLOY / "crds").glob("*.yaml"))
    assert crds and set(crds) <= set(resources)
    assert "manifests/finetune-operator.yaml" in resources
    for resource in resources:
        assert (DEPLOY / resource).is_file(), resource


def test_plain_manifests_are_the_default_chart_in_its_own_namespace() -> None:
    objects = list(yaml.safe_load_all(generate.MANIFESTS.read_text()))
    namespace = the(objects, "Namespace")["metadata"]["name"]
    assert namespace == generate.RELEASE_NAMESPACE
    assert objects[1:] == render()
    for obj in objects:
        validate_object(obj, objects)
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]


def test_kustomize_builds_the_same_objects() -> None:
    """`kubectl kustomize` (offline; no API server needed) builds what apply -k sends."""
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed; the kustomization is still checked structurally above")
    built = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    objects = [o for o in yaml.safe_load_all(built.stdout) if o]
    expected = list(yaml.safe_load_all(generate.MANIFESTS.read_text()))
    expected += [yaml.safe_load(p.read_text()) for p in (DEPLOY / "crds").glob("*.yaml")]
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, objects)) == sorted(map(key, expected))
