"""Alert rules, checked and unit-tested by the real promtool (Debian's prometheus)."""

from __future__ import annotations

import re
import subprocess

import yaml

from deploy_support import PROMETHEUS_HOW, ROOT, generate, render, the, tool

HERE = ROOT / "tests" / "deploy"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool", PROMETHEUS_HOW), *args], capture_output=True, text=True,
                          timeout=120, cwd=HERE)


def test_promtool_accepts_the_rule_file() -> None:
    result = _promtool("check", "rules", str(generate.ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_each_alert_fires_when_it_should_and_only_then() -> None:
    """tests/deploy/alerts_test.yaml: promtool's rule unit tests on synthetic series."""
    result = _promtool("test", "rules", "alerts_test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path) -> None:
    """The check above can fail: a rule with a bad expression is refused."""
    broken = yaml.safe_load(generate.ALERTS.read_text())
    broken["groups"][0]["rules"][0]["expr"] = "sum by (namespace (finetune_operator_jobs"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = _promtool("check", "rules", str(path))
    assert result.returncode != 0
    assert "parse error" in (result.stdout + result.stderr)


def test_rendered_rule_with_custom_thresholds_is_valid(tmp_path) -> None:
    objects = render({"prometheusRule": {"enabled": True, "queuedForMinutes": 90,
                                         "reconcileErrorsPerSecond": 0.5}})
    spec = the(objects, "PrometheusRule")["spec"]
    rules = {r["alert"]: r for g in spec["groups"] for r in g["rules"]}
    assert rules["FineTuneJobsQueuedTooLong"]["for"] == "90m"
    assert "90 minutes" in rules["FineTuneJobsQueuedTooLong"]["annotations"]["description"]
    assert rules["FineTuneOperatorReconcileErrors"]["expr"].endswith("> 0.5")
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_the_four_failure_modes_with_the_operators_metrics() -> None:
    from finetune_operator.metrics import METRIC_NAMES

    rules = [r for g in yaml.safe_load(generate.ALERTS.read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == {
        "FineTuneJobFailed", "FineTuneJobsQueuedTooLong", "FineTuneOperatorReconcileErrors",
        "FineTuneOperatorDown"}
    used = {m for r in rules for m in re.findall(r"\bfinetune_operator_[a-z_]+", r["expr"])}
    assert used
    for metric in used:
        base = re.sub(r"_(bucket|sum|count)$", "", metric)
        assert metric in METRIC_NAMES or base in METRIC_NAMES, f"{metric} is not exported by metrics.py"
