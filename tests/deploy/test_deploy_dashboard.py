"""The Grafana dashboard queries only metrics that the operator or trainer export.

Operator names come from `finetune_operator.metrics.METRIC_NAMES`; trainer names are
the `ray.util.metrics` instruments `finetune_trainer.telemetry.WorkerMetrics` declares,
as Ray's Prometheus endpoint exports them (prefixed `ray_`). That every query parses
is checked against a real Prometheus in test_deploy_scrape.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from deploy_support import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "finetune-dashboard.json"
PROMQL_WORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right",
                "bool", "offset", "inf", "nan"}
BUILTIN_SERIES = {"up"}  # written by Prometheus itself for every target


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _queries(dashboard: dict[str, Any]) -> list[str]:
    panels = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    variables = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return panels + variables


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads: what is left once label matchers,
    ranges, grouping clauses, strings, numbers and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\blabel_values\(([a-zA-Z_:][\w:]*)\s*,\s*\w+\)", r" \1 ", text)
    names = set()
    for name, call in re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        if not call and name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


@pytest.fixture(scope="module")
def exported() -> set[str]:
    from finetune_operator.metrics import METRIC_NAMES
    from finetune_trainer.telemetry import WorkerMetrics

    operator = set(METRIC_NAMES)
    for name in METRIC_NAMES:  # histograms' series
        operator |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    instruments = WorkerMetrics("job", "trial")  # ray.util.metrics needs no running Ray to declare
    trainer = {f"ray_{metric.info['name']}" for metric in
               [*instruments.gauges.values(), instruments.steps, instruments.samples, instruments.reports]}
    return operator | trainer | BUILTIN_SERIES


def test_the_name_extractor_finds_series_and_nothing_else() -> None:
    expr = ('histogram_quantile(0.9, sum by (le, phase) (increase(a_bucket{namespace=~"x|y"}[24h])))'
            ' / on (phase) group_left b_total offset 5m + 3 * max without (trial) (c:rate5m)')
    assert metric_names(expr) == {"a_bucket", "b_total", "c:rate5m"}


def test_dashboard_parses_and_has_the_panels_people_look_for() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "finetune-operator"
    titles = {p["title"] for p in dashboard["panels"]}
    for title in ("FineTuneJobs by phase", "Queue depth", "Job duration (median and p90, last 24 h)",
                  "Training loss", "Eval accuracy", "Samples per second"):
        assert title in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"


def test_every_queried_metric_is_exported(exported: set[str]) -> None:
    queries = _queries(_dashboard())
    used = set().union(*(metric_names(q) for q in queries))
    assert any(n.startswith("finetune_operator_") for n in used)
    assert any(n.startswith("ray_finetune_train_") for n in used)
    missing = sorted(used - exported)
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"


def test_training_panels_cover_loss_accuracy_and_throughput() -> None:
    by_title = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in _dashboard()["panels"]}
    assert "ray_finetune_train_loss" in by_title["Training loss"]
    assert "ray_finetune_train_eval_accuracy" in by_title["Eval accuracy"]
    assert "ray_finetune_train_samples_per_second" in by_title["Samples per second"]
    assert "finetune_operator_queue_depth" in by_title["Queue depth"]
