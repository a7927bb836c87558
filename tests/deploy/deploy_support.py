"""Shared pieces of the deploy tests: the chart, the generator, external tools and servers.

The chart is rendered by the real Helm engine (helm-python-sdk), objects are checked
by kubernetes-validate, alert rules by promtool. A missing tool fails the test with
the way to install it: in CI a skipped deploy test would hide a broken install.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pytest
from tests.support.helpers import free_port, http_ok, stop  # noqa: F401  (re-exported)

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


# ------------------------------------------------------------------------- servers


def poll(what: str, check: Callable[[], Any], timeout: float, describe: Callable[[], str] = lambda: "") -> Any:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout} s. {describe()}")
        time.sleep(0.25)


def http_json(url: str) -> Any:
    """The JSON at `url`, or None while the server is not answering."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except OSError:
        return None


def query(url: str, expr: str) -> dict[str, Any]:
    """Prometheus' instant-query answer for `expr` ({} while it is not answering)."""
    return http_json(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})) or {}


def query_result(url: str, expr: str) -> list[dict[str, Any]]:
    return query(url, expr).get("data", {}).get("result", [])


@contextmanager
def running_prometheus(tmp_path: Path, scrape_configs: list[dict[str, Any]],
                       rule_files: tuple[Path, ...] = ()) -> Iterator[str]:
    """Debian's Prometheus on a free 127.0.0.1 port with temporary storage, scraping
    every second; yields its base URL and stops it afterwards."""
    import yaml

    binary = tool("prometheus", PROMETHEUS_HOW)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": scrape_configs,
    }))
    log_path = tmp_path / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        poll("Prometheus ready", lambda: process.poll() is None and http_ok(f"{url}/-/ready"), 60,
             lambda: log_path.read_text()[-4000:])
        yield url
    finally:
        stop(process)
