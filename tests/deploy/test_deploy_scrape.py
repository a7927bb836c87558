"""End to end: a real Prometheus scrapes a running `finetune operator`.

The operator runs as the chart configures it (the rendered Deployment's arguments and
settings file), against the Kubernetes API emulator; Prometheus (Debian's binary) runs
on 127.0.0.1 with the chart's alert rules loaded. The test asserts through
Prometheus' HTTP API that the operator's series arrive, that the alert rules load
healthy, and that every query of the Grafana dashboard is one Prometheus accepts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from deploy_support import (DEPLOY, ROOT, free_port, generate, http_json, http_ok, poll, query, render,
                            running_prometheus, stop, the)
from tests.support.jobs import runnable_job
from tests.support.kube_fixtures import KubeHandle, kube  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

SCRAPE_JOB = "finetune-operator-metrics"  # the job name the alert rules expect
DASHBOARD = DEPLOY / "grafana" / "finetune-dashboard.json"


@pytest.fixture
def operator_ports(kube: KubeHandle, tmp_path: Path) -> Iterator[int]:
    """`finetune operator` started with the chart's own arguments and settings file;
    yields its metrics port."""
    metrics_port, health_port = free_port(), free_port()
    objects = render({"metrics": {"port": metrics_port}, "health": {"port": health_port}})
    (container,) = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    settings = tmp_path / "settings.yaml"
    settings.write_text(the(objects, "ConfigMap")["data"]["settings.yaml"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNE_") and k != "KUBECONFIG"}
    env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
    env.update({"FINETUNE_SETTINGS_FILE": str(settings), "POD_NAME": "finetune-operator-test",
                "POD_NAMESPACE": "default", "PYTHONUNBUFFERED": "1"})
    args = [str(Path(sys.executable).parent / "finetune"), *container["args"],
            "--kubeconfig", str(kube.kubeconfig_path), "--bind", "127.0.0.1", "--resync-seconds", "1"]
    log_path = tmp_path / "operator.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        def healthy() -> bool:
            assert process.poll() is None, f"operator exited:\n{log_path.read_text()[-4000:]}"
            return http_ok(f"http://127.0.0.1:{health_port}/healthz")

        poll("the operator's /healthz", healthy, 60, lambda: log_path.read_text()[-4000:])
        yield metrics_port
    finally:
        stop(process)


@pytest.fixture
def prometheus(operator_ports: int, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping the operator every second, with the alert rules."""
    scrape = {
        "job_name": SCRAPE_JOB,
        # As the ServiceMonitor does: keep the operator's `namespace` label.
        "honor_labels": True,
        "static_configs": [{"targets": [f"127.0.0.1:{operator_ports}"]}],
    }
    with running_prometheus(tmp_path, [scrape], rule_files=(generate.ALERTS,)) as url:
        yield url


def test_prometheus_scrapes_the_operators_series(kube: KubeHandle, prometheus: str) -> None:
    from finetune_operator.metrics import JOBS, METRIC_NAMES

    kube.create(runnable_job("scraped"))

    def target_up() -> bool:
        result = query(prometheus, f'up{{job="{SCRAPE_JOB}"}} == 1').get("data", {}).get("result")
        return bool(result)

    poll("the operator target up", target_up, 60,
         lambda: json.dumps(http_json(f"{prometheus}/api/v1/targets"))[:2000])

    def job_series() -> list[dict[str, Any]]:
        return query(prometheus, f'sum by (namespace) ({JOBS}{{namespace="default"}}) >= 1') \
            .get("data", {}).get("result", [])

    (series,) = poll("finetune_operator_jobs for namespace default", job_series, 60,
                     lambda: json.dumps(query(prometheus, JOBS))[:2000])
    assert series["metric"] == {"namespace": "default"}
    assert float(series["value"][1]) == 1.0

    names = http_json(f"{prometheus}/api/v1/label/__name__/values")["data"]
    ours = {n for n in names if n.startswith("finetune_operator_")}
    assert JOBS in ours and ours, names
    # Families as declared: counters without _total, histograms without their series suffixes.
    families = {n.removesuffix("_total") for n in METRIC_NAMES}
    for name in ours:
        family = name
        for suffix in ("_bucket", "_sum", "_count", "_created", "_total"):
            family = family.removesuffix(suffix)
        assert name in METRIC_NAMES or family in families, f"{name} is exported but not in METRIC_NAMES"


def test_alert_rules_load_and_evaluate_healthy(prometheus: str) -> None:
    def rules() -> list[dict[str, Any]]:
        groups = (http_json(f"{prometheus}/api/v1/rules") or {}).get("data", {}).get("groups", [])
        loaded = [r for g in groups for r in g["rules"]]
        return loaded if loaded and all(r.get("lastEvaluation", "").startswith("20") for r in loaded) else []

    loaded = poll("the alert rules evaluated", rules, 30)
    assert {r["name"] for r in loaded} == {
        "FineTuneJobFailed", "FineTuneJobsQueuedTooLong", "FineTuneOperatorReconcileErrors",
        "FineTuneOperatorDown"}
    for rule in loaded:
        assert rule["health"] == "ok", rule


def test_every_dashboard_query_is_valid_promql(prometheus: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    for expr in exprs:
        concrete = expr.replace("$__rate_interval", "1m").replace("$namespace", ".*").replace("$job", ".*")
        answer = query(prometheus, concrete)
        assert answer.get("status") == "success", f"{expr}: {answer}"
