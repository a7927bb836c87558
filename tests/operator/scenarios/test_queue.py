"""The per-namespace concurrency queue: Queued with a position, admitted in order."""

from __future__ import annotations

from tests.operator.scenarios.conftest import (
    creates,
    JOBS,
    RAYJOBS,
    event_reasons,
    metric_value,
    phase_is,
    set_rayjob_state,
    wait_until,
)
from tests.support.jobs import runnable_job


def test_jobs_over_the_limit_queue_and_are_admitted_in_priority_then_age_order(kube, start_operator):
    operator = start_operator(env={"FINETUNE_CONCURRENCY_LIMIT": "1"})
    kube.create(runnable_job("first"))
    kube.wait_for(RAYJOBS, "first", lambda obj: True, "default")
    kube.create(runnable_job("second"))
    second = kube.wait_for(JOBS, "second", phase_is("Queued"), "default")
    kube.create(runnable_job("urgent", labels={"finetune.dev/priority": "10"}))
    urgent = kube.wait_for(JOBS, "urgent", phase_is("Queued"), "default")
    # The urgent job overtakes the older one in the queue.
    kube.wait_for(JOBS, "second", lambda j: "position 2" in j["status"]["message"], "default")
    assert "position 1" in kube.get(JOBS, "urgent", "default")["status"]["message"]
    assert second["status"].get("rayJobName") is None and urgent["status"].get("rayJobName") is None
    assert creates(kube, at_least=1) == 1  # only first's, however briefly the others existed
    wait_until(lambda: metric_value(operator.metrics(), "finetune_operator_queue_depth",
                                    {"namespace": "default"}) == 2, what="queue depth 2")

    set_rayjob_state(kube, "first", "Complete", "SUCCEEDED")
    kube.wait_for(JOBS, "first", phase_is("Succeeded"), "default")
    kube.wait_for(RAYJOBS, "urgent", lambda obj: True, "default", timeout=15)
    kube.wait_for(JOBS, "urgent", phase_is("Pending"), "default")
    assert creates(kube, at_least=2) == 2  # first's and urgent's: second still waits
    assert "Admitted" in event_reasons(kube, "urgent")

    set_rayjob_state(kube, "urgent", "Failed", reason="AppFailed")
    kube.wait_for(RAYJOBS, "second", lambda obj: True, "default", timeout=15)


def test_kueue_jobs_skip_our_queue_and_are_created_suspended(kube, start_operator):
    start_operator(env={"FINETUNE_CONCURRENCY_LIMIT": "1"})
    kube.create(runnable_job("plain"))
    kube.wait_for(RAYJOBS, "plain", lambda obj: True, "default")
    kube.create(runnable_job("kueued", scheduling={"queueName": "team-queue"}))
    rayjob = kube.wait_for(RAYJOBS, "kueued", lambda obj: True, "default")
    assert rayjob["spec"]["suspend"] is True
    assert rayjob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-queue"
    kube.wait_for(JOBS, "kueued", lambda j: (j.get("status") or {}).get("phase") == "Queued"
                  and "Kueue" in j["status"]["message"], "default")
    # Kueue admits it by unsuspending; the operator does not suspend it back.
    kube.patch(RAYJOBS, "kueued", {"spec": {"suspend": False}}, "default")
    set_rayjob_state(kube, "kueued", "Running", "RUNNING")
    kube.wait_for(JOBS, "kueued", phase_is("Running"), "default")
    assert kube.get(RAYJOBS, "kueued", "default")["spec"]["suspend"] is False
