"""The CLI's pure formatting helpers."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from finetune_operator.cli.jobs import age, best_metric_text, progress_text

NOW = datetime(2026, 1, 2, 0, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("timestamp", "expected"), [
    ("2026-01-01T23:59:15Z", "45s"),
    ("2026-01-01T23:48:00Z", "12m"),
    ("2026-01-01T21:00:00Z", "3h"),
    ("2025-12-28T00:00:00Z", "5d"),
    ("2026-01-02T00:00:05Z", "0s"),  # clock skew: never negative
    (None, "-"),
    ("yesterday", "-"),
])
def test_age(timestamp, expected):
    assert age(timestamp, NOW) == expected


@pytest.mark.parametrize(("status", "expected"), [
    ({}, "-"),
    ({"progress": {"percent": 12.6}}, "13%"),
    ({"progress": {"percent": 40, "step": 40, "totalSteps": 100}}, "40% (step 40/100)"),
    ({"progress": {"percent": 50, "trialsCompleted": 2, "trialsTotal": 4}}, "50% (trials 2/4)"),
    ({"progress": {"percent": 75, "step": 3, "totalSteps": 4, "trialsCompleted": 1, "trialsTotal": 2}},
     "75% (step 3/4, trials 1/2)"),
])
def test_progress_text(status, expected):
    assert progress_text(status) == expected


@pytest.mark.parametrize(("status", "expected"), [
    ({}, "-"),
    ({"bestMetric": "eval_loss=0.312", "bestMetrics": {"eval_accuracy": 0.9}}, "eval_loss=0.312"),
    ({"bestMetrics": {"eval_loss": 0.31234, "eval_accuracy": 0.9}}, "eval_accuracy=0.9"),
])
def test_best_metric_text(status, expected):
    assert best_metric_text(status) == expected
