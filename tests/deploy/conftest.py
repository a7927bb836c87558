"""Shared pieces of the deploy tests: the chart, the generator, and external tools.

The chart is rendered by the real Helm engine (helm-python-sdk), objects are checked
by kubernetes-validate, alert rules by promtool. A missing tool fails the test with
the way to install it: in CI a skipped deploy test would hide a broken install.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "finetune-operator"
DEPLOY = ROOT / "deploy"

# Kubernetes versions the rendered objects are validated for: the oldest the chart
# supports (Chart.yaml kubeVersion) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.27.0", "latest")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_generate", DEPLOY / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


generate = _load_generator()


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The chart's objects for `values` (release finetune-operator in finetune-system)."""
    return generate.render_chart(values)


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None,
         namespace: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def the(objects: list[dict[str, Any]], kind: str, name: str | None = None,
        namespace: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (and name/namespace); fails when there are 0 or 2+."""
    found = find(objects, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def tool(name: str, how: str) -> str:
    """Path of an external tool, or a failed test that says how to install it."""
    path = shutil.which(name) or (str(Path(sys.executable).parent / name)
                                  if (Path(sys.executable).parent / name).exists() else None)
    if not path:
        pytest.fail(f"{name} is not installed: {how}")
    return path


PROMETHEUS_HOW = "run `make install` (it installs Debian's prometheus package: apt-get install -y prometheus)"


def validate_prometheus_operator_object(obj: dict[str, Any]) -> None:
    """ServiceMonitor and PrometheusRule against prometheus-operator's CRD schemas
    (the generated pydantic models of cloudcoil-models-prometheus-operator). The
    models ignore unknown fields, so a round trip that loses a field fails too."""
    from cloudcoil.models.prometheus_operator import v1

    model = {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule}[obj["kind"]]
    parsed = model.model_validate(obj)
    round_trip = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert round_trip == obj, f"{obj['kind']} has fields its CRD does not know"


def validate_object(obj: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """Validate one rendered object against the schema of its kind: Kubernetes'
    own OpenAPI schemas (strict: unknown fields fail), prometheus-operator's CRDs,
    or a CRD rendered beside it."""
    import jsonschema
    import kubernetes_validate

    kind, api_version = obj["kind"], obj["apiVersion"]
    if api_version == "monitoring.coreos.com/v1":
        validate_prometheus_operator_object(obj)
        return
    group = api_version.split("/")[0] if "/" in api_version else ""
    crds = [c for c in find(objects, "CustomResourceDefinition")
            if c["spec"]["group"] == group and c["spec"]["names"]["kind"] == kind]
    if crds:
        (version,) = [v for v in crds[0]["spec"]["versions"] if f"{group}/{v['name']}" == api_version]
        jsonschema.validate(obj, version["schema"]["openAPIV3Schema"])
        return
    for kube_version in KUBE_VERSIONS:
        if kube_version == "latest":
            kube_version = kubernetes_validate.latest_version()
        kubernetes_validate.validate(obj, kube_version, strict=True)
