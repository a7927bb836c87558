"""End to end: the dashboard's training panels show what a real Ray exports.

The trainer's `WorkerMetrics` records on a Ray worker of a local Ray; a real
Prometheus scrapes Ray's metrics endpoint the way a cluster's scrape config does (no
honor_labels, so the trainer's `job` tag arrives as `exported_job`); every query of
the dashboard's training panels must then return the recorded values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from deploy_support import DEPLOY, free_port, http_ok, poll, query_result, running_prometheus

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

DASHBOARD = DEPLOY / "grafana" / "finetune-dashboard.json"
RECORDED = {"loss": 0.5, "eval_accuracy": 0.75, "samples_per_second": 21.0, "epoch": 1.5}


@pytest.fixture(scope="module")
def ray_metrics_port() -> Iterator[int]:
    """A local Ray of our own whose metrics agent serves on a free port, with one
    worker that has recorded RECORDED for job `demo-job`, trial `run`."""
    import ray

    port = free_port()
    ray.init(address="local", num_cpus=1, include_dashboard=False, _metrics_export_port=port,
             log_to_driver=False, configure_logging=False)
    try:
        @ray.remote(num_cpus=0)
        class Recorder:
            def record(self, values: dict[str, float]) -> bool:
                from finetune_trainer.telemetry import WorkerMetrics

                self.metrics = WorkerMetrics("demo-job", "run")
                self.metrics.record(values, new_steps=3, new_samples=96)
                return True

        recorder = Recorder.remote()  # an actor keeps its worker (and its metrics) alive
        assert ray.get(recorder.record.remote(RECORDED), timeout=120)
        poll("Ray's metrics endpoint", lambda: http_ok(f"http://127.0.0.1:{port}/metrics"), 60)
        yield port
    finally:
        ray.shutdown()


@pytest.fixture
def prometheus(ray_metrics_port: int, tmp_path: Path) -> Iterator[str]:
    scrape = {"job_name": "ray", "static_configs": [{"targets": [f"127.0.0.1:{ray_metrics_port}"]}]}
    with running_prometheus(tmp_path, [scrape]) as url:
        yield url


def _training_panels() -> dict[str, list[str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]
            if any("ray_finetune_train_" in t["expr"] for t in p.get("targets", []))}


def test_training_panels_show_the_recorded_values(prometheus: str) -> None:
    panels = _training_panels()
    assert {"Training loss", "Eval accuracy", "Samples per second"} <= set(panels)
    expected = {"Training loss": RECORDED["loss"], "Eval accuracy": RECORDED["eval_accuracy"],
                "Samples per second": RECORDED["samples_per_second"],
                "Training progress (epochs)": RECORDED["epoch"]}
    for title, exprs in panels.items():
        for expr in exprs:
            concrete = expr.replace("$job", "demo-job").replace("$__rate_interval", "1m")
            result: list[dict[str, Any]] = poll(f"{title}: {concrete}", lambda: query_result(prometheus, concrete),
                                                60, lambda: json.dumps(query_result(prometheus, "{job=\"ray\"}"))[:1500])
            (series,) = result
            assert series["metric"].get("exported_job") == "demo-job"
            assert float(series["value"][1]) == pytest.approx(expected[title])


def test_job_variable_lists_the_run(prometheus: str) -> None:
    """The dashboard's $job variable reads label values of the loss gauge."""
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "job"]
    assert variable["query"]["query"] == "label_values(ray_finetune_train_loss, exported_job)"
    result = poll("the loss gauge", lambda: query_result(prometheus, "ray_finetune_train_loss"), 60)
    assert {s["metric"]["exported_job"] for s in result} == {"demo-job"}
