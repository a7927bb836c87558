"""Metric definitions (parsed back from the exposition) and the Event reason set."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from finetune_operator import metrics
from finetune_operator.events import EventReason, clip, rayjob_updated_message, spec_change_refused_message


def samples(m: metrics.OperatorMetrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_every_listed_name_is_exposed():
    m = metrics.OperatorMetrics()
    m.set_job_counts({("team-a", "Running"): 1})
    m.set_queue_depth("team-a", 0)
    m.job_finished("team-a", "Succeeded", 10)
    m.reconcile_errors.labels(reason="X").inc()
    m.rayjobs_created.labels(namespace="team-a").inc()
    m.rayjobs_deleted.labels(namespace="team-a").inc()
    with m.reconciling():
        pass
    names = {name for name, _ in samples(m)}
    for name in metrics.METRIC_NAMES:
        assert name in names or f"{name}_count" in names, name
    assert all(name.startswith("finetune_operator_") for name in names)


def test_registries_are_independent():
    first, second = metrics.OperatorMetrics(), metrics.OperatorMetrics()
    first.rayjobs_created.labels(namespace="a").inc()
    assert samples(second).get(("finetune_operator_rayjobs_created_total", (("namespace", "a"),))) is None


def test_job_counts_replace_and_zero_fill():
    m = metrics.OperatorMetrics()
    m.set_job_counts({("team-a", "Running"): 2, ("team-a", "Queued"): 1})
    m.set_job_counts({("team-a", "Succeeded"): 3})
    got = samples(m)
    key = lambda phase: ("finetune_operator_jobs", (("namespace", "team-a"), ("phase", phase)))  # noqa: E731
    assert got[key("Running")] == 0 and got[key("Queued")] == 0 and got[key("Succeeded")] == 3


def test_reconcile_errors_are_counted_by_reason_and_reraised():
    m = metrics.OperatorMetrics()
    with pytest.raises(TimeoutError):
        with m.reconciling():
            raise TimeoutError("api down")
    got = samples(m)
    assert got[("finetune_operator_reconcile_errors_total", (("reason", "TimeoutError"),))] == 1
    assert got[("finetune_operator_reconcile_duration_seconds_count", ())] == 1


def test_job_duration_lands_in_buckets():
    m = metrics.OperatorMetrics()
    m.job_finished("team-a", "Failed", 400)
    got = samples(m)
    labels = lambda le: (("le", le), ("namespace", "team-a"), ("phase", "Failed"))  # noqa: E731
    assert got[("finetune_operator_job_duration_seconds_bucket", labels("300.0"))] == 0
    assert got[("finetune_operator_job_duration_seconds_bucket", labels("900.0"))] == 1


def test_event_reasons_are_a_fixed_camel_case_set():
    values = [reason.value for reason in EventReason]
    assert len(values) == len(set(values))
    assert all(value[0].isupper() and value.isalnum() for value in values)
    assert EventReason.FAILED.event_type == "Warning"
    assert EventReason.SUCCEEDED.event_type == "Normal"
    assert EventReason("RayJobMissing") is EventReason.RAYJOB_MISSING


def test_messages_fit_an_event():
    assert len(clip("x" * 5000)) == 1000
    message = spec_change_refused_message(["training.learningRate", "resources.workers"])
    assert "training.learningRate, resources.workers" in message and "scheduling.suspend" in message


@pytest.mark.parametrize(("changes", "message"), [
    ({"suspend": (False, True)}, "suspended RayJob rj"),
    ({"suspend": (True, False)}, "resumed RayJob rj"),
    ({"activeDeadlineSeconds": (None, 3600)}, "updated RayJob rj: activeDeadlineSeconds unset -> 3600"),
    ({"ttlSecondsAfterFinished": (60, 5), "suspend": (False, True)},
     "updated RayJob rj: suspend false -> true, ttlSecondsAfterFinished 60 -> 5"),
])
def test_a_rayjob_update_names_each_change(changes, message):
    assert rayjob_updated_message("rj", changes) == message


R = EventReason


@pytest.mark.parametrize(("old", "new", "detail", "expected"), [
    # A phase entered posts its Event, with the status message.
    ({"phase": "Pending"}, {"phase": "Running", "message": "training"}, None, [(R.RUNNING, "training")]),
    ({"phase": "Running"}, {"phase": "Succeeded", "message": "done"}, None, [(R.SUCCEEDED, "done")]),
    ({}, {"phase": "Queued", "message": "slot 2"}, None, [(R.QUEUED, "slot 2")]),
    # Pending has no Event of its own, except when it follows Queued: admitted.
    ({}, {"phase": "Pending", "message": "admitted"}, None, []),
    ({"phase": "Queued"}, {"phase": "Pending", "message": "admitted"}, None, [(R.ADMITTED, "admitted")]),
    # A detail reason replaces the phase's, and speaks up on a new message alone.
    ({"phase": "Pending"}, {"phase": "Failed", "message": "bad"}, R.INVALID_SPEC, [(R.INVALID_SPEC, "bad")]),
    ({"phase": "Queued", "message": "a"}, {"phase": "Queued", "message": "b"}, R.SECRET_NOT_FOUND,
     [(R.SECRET_NOT_FOUND, "b")]),
    ({"phase": "Queued", "message": "a"}, {"phase": "Queued", "message": "a"}, R.SECRET_NOT_FOUND, []),
    # No message: the phase's name.
    ({"phase": "Pending"}, {"phase": "Running"}, None, [(R.RUNNING, "Running")]),
    # A higher attempt on a live job is a retry; the first attempt, or a finished job, is not.
    ({"phase": "Running", "attempt": 1}, {"phase": "Running", "attempt": 2, "message": "again"}, None,
     [(R.RETRYING, "again")]),
    ({"phase": "Running", "attempt": 1}, {"phase": "Running", "attempt": 2}, None, [(R.RETRYING, "attempt 2")]),
    ({"phase": "Pending"}, {"phase": "Running", "attempt": 1, "message": "m"}, None, [(R.RUNNING, "m")]),
    ({"phase": "Running", "attempt": 1}, {"phase": "Failed", "attempt": 2, "message": "x"}, None,
     [(R.FAILED, "x")]),
])
def test_status_change_events(old, new, detail, expected):
    from finetune_operator.events import status_change_events

    assert status_change_events(old, new, detail) == expected
