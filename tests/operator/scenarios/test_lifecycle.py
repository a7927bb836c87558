"""A FineTuneJob's life with a well-behaved KubeRay: created, running, finished."""

from __future__ import annotations

import pytest

from tests.operator.scenarios.conftest import (
    creates,
    JOBS,
    RAYJOBS,
    assert_valid_rayjob,
    event_reasons,
    metric_value,
    phase_is,
    progress_line,
    set_rayjob_state,
    start_submitter,
    wait_until,
)
from tests.support.jobs import runnable_job


def test_apply_creates_a_valid_rayjob_and_pending_status(kube, operator):
    kube.create(runnable_job("reviews"))

    job = kube.wait_for(JOBS, "reviews", phase_is("Pending"), "default")
    rayjob = kube.wait_for(RAYJOBS, "reviews", lambda obj: True, "default")
    assert_valid_rayjob(rayjob)
    assert job["status"]["rayJobName"] == "reviews"
    owner = rayjob["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("FineTuneJob", job["metadata"]["uid"])
    configmap = kube.get("configmaps", "reviews-config", "default")
    assert '"name": "default-reviews"' in configmap["data"]["job.json"]
    wait_until(lambda: "RayJobCreated" in event_reasons(kube, "reviews"), what="RayJobCreated event")


@pytest.mark.emulator_only("reads the submitter pod's log, which needs a kubelet")
def test_running_then_succeeded_follows_kuberay_and_the_submitter_log(kube, operator):
    kube.create(runnable_job("reviews"))
    kube.wait_for(RAYJOBS, "reviews", lambda obj: True, "default")

    set_rayjob_state(kube, "reviews", "Running", "RUNNING", startTime="2026-01-01T00:00:00Z")
    start_submitter(kube, "reviews", "\n".join([
        "ray job submit ...",
        progress_line(step=2, totalSteps=4, epoch=0.5, percent=50.0, metrics={"eval_loss": 0.7}),
    ]))
    job = kube.wait_for(JOBS, "reviews", lambda j: (j.get("status") or {}).get("progress", {}).get("step") == 2,
                        "default")
    assert job["status"]["phase"] == "Running"
    assert job["status"]["progress"]["percent"] == 50.0
    assert job["status"]["metrics"] == {"eval_loss": 0.7}

    kube.set_pod_log("default", "reviews-submitter", "\n" + progress_line(
        state="succeeded", step=4, totalSteps=4, epoch=1.0, percent=100.0,
        bestMetrics={"eval_loss": 0.5}, modelUri="s3://models/reviews/default-reviews/model"), append=True)
    set_rayjob_state(kube, "reviews", "Complete", "SUCCEEDED", endTime="2026-01-01T00:10:00Z")

    job = kube.wait_for(JOBS, "reviews", phase_is("Succeeded"), "default")
    assert job["status"]["modelUri"] == "s3://models/reviews/default-reviews/model"
    assert job["status"]["bestMetrics"] == {"eval_loss": 0.5}
    assert job["status"]["completionTime"]
    succeeded = next(c for c in job["status"]["conditions"] if c["type"] == "Succeeded")
    assert succeeded["status"] == "True"
    reasons = wait_until(lambda: (r := event_reasons(kube, "reviews")) and "Succeeded" in r and r,
                         what="Succeeded event")
    assert "Running" in reasons and "RayJobCreated" in reasons

    def scraped() -> bool:
        text = operator.metrics()
        return (metric_value(text, "finetune_operator_jobs", {"namespace": "default", "phase": "Succeeded"}) == 1
                and metric_value(text, "finetune_operator_rayjobs_created_total", {"namespace": "default"}) == 1)
    wait_until(scraped, what="metrics to show one created RayJob and one succeeded job")
    assert (metric_value(operator.metrics(), "finetune_operator_reconcile_duration_seconds_count") or 0) >= 3


def test_failed_rayjob_fails_the_job_with_kuberays_reason(kube, operator):
    kube.create(runnable_job("broken"))
    kube.wait_for(RAYJOBS, "broken", lambda obj: True, "default")
    set_rayjob_state(kube, "broken", "Failed", "FAILED", reason="DeadlineExceeded",
                     message="the RayJob ran past activeDeadlineSeconds")

    job = kube.wait_for(JOBS, "broken", phase_is("Failed"), "default")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "DeadlineExceeded")
    assert "activeDeadlineSeconds" in job["status"]["message"]
    wait_until(lambda: "Failed" in event_reasons(kube, "broken"), what="Failed event")


def test_application_failure_after_complete_is_failed(kube, operator):
    kube.create(runnable_job("crashes"))
    kube.wait_for(RAYJOBS, "crashes", lambda obj: True, "default")
    set_rayjob_state(kube, "crashes", "Complete", "FAILED")
    job = kube.wait_for(JOBS, "crashes", phase_is("Failed"), "default")
    assert next(c for c in job["status"]["conditions"] if c["type"] == "Failed")["reason"] == "AppFailed"


def test_suspend_and_resume_patch_the_rayjob(kube, operator):
    kube.create(runnable_job("pausable"))
    rayjob = kube.wait_for(RAYJOBS, "pausable", lambda obj: True, "default")
    assert rayjob["spec"]["suspend"] is False

    kube.patch(JOBS, "pausable", {"spec": {"scheduling": {"suspend": True}}}, "default")
    kube.wait_for(RAYJOBS, "pausable", lambda obj: obj["spec"]["suspend"] is True, "default")
    set_rayjob_state(kube, "pausable", "Suspended")
    kube.wait_for(JOBS, "pausable", phase_is("Suspended"), "default")

    kube.patch(JOBS, "pausable", {"spec": {"scheduling": {"suspend": False}}}, "default")
    kube.wait_for(RAYJOBS, "pausable", lambda obj: obj["spec"]["suspend"] is False, "default")
    set_rayjob_state(kube, "pausable", "Running", "RUNNING")
    kube.wait_for(JOBS, "pausable", phase_is("Running"), "default")
    reasons = event_reasons(kube, "pausable")
    assert "Suspended" in reasons and "Resumed" in reasons


@pytest.mark.garbage_collector
def test_deleting_the_job_garbage_collects_its_children(kube, operator):
    kube.create(runnable_job("doomed"))
    kube.wait_for(RAYJOBS, "doomed", lambda obj: True, "default")
    kube.delete(JOBS, "doomed", "default")
    kube.wait_gone(JOBS, "doomed", "default")
    kube.wait_gone(RAYJOBS, "doomed", "default")
    kube.wait_gone("configmaps", "doomed-config", "default")


def test_kuberay_retry_is_reported_as_a_new_attempt(kube, operator):
    kube.create(runnable_job("retried", scheduling={"backoffLimit": 2}))
    kube.wait_for(RAYJOBS, "retried", lambda obj: True, "default")
    set_rayjob_state(kube, "retried", "Running", "RUNNING")
    kube.wait_for(JOBS, "retried", lambda j: (j.get("status") or {}).get("attempt") == 1
                  and j["status"]["phase"] == "Running", "default")
    set_rayjob_state(kube, "retried", "Retrying", failed=1)
    job = kube.wait_for(JOBS, "retried", lambda j: j["status"].get("attempt") == 2, "default")
    retrying = next(c for c in job["status"]["conditions"] if c["type"] == "Retrying")
    assert retrying["status"] == "True"
    assert "attempt 2 of 3" in job["status"]["message"]
    wait_until(lambda: "Retrying" in event_reasons(kube, "retried"), what="Retrying event")


def test_deadline_backstop_fails_the_job_and_deletes_its_rayjob(kube, operator):
    kube.create(runnable_job("slow", scheduling={"activeDeadlineSeconds": 1}))
    kube.wait_for(RAYJOBS, "slow", lambda obj: True, "default")
    set_rayjob_state(kube, "slow", "Running", "RUNNING")
    job = kube.wait_for(JOBS, "slow", phase_is("Failed"), "default")
    assert next(c for c in job["status"]["conditions"] if c["type"] == "Failed")["reason"] == "DeadlineExceeded"
    kube.wait_gone(RAYJOBS, "slow", "default")
    wait_until(lambda: metric_value(operator.metrics(), "finetune_operator_rayjobs_deleted_total",
                                    {"namespace": "default"}) == 1, what="rayjobs_deleted_total 1")


def test_rayjob_deleted_behind_our_back_fails_the_job_without_recreating_it(kube, operator):
    kube.create(runnable_job("orphaned"))
    kube.wait_for(RAYJOBS, "orphaned", lambda obj: True, "default")
    kube.wait_for(JOBS, "orphaned", lambda j: (j.get("status") or {}).get("startTime"), "default")
    set_rayjob_state(kube, "orphaned", "Running", "RUNNING")
    kube.wait_for(JOBS, "orphaned", phase_is("Running"), "default")
    kube.delete(RAYJOBS, "orphaned", "default")
    job = kube.wait_for(JOBS, "orphaned", phase_is("Failed"), "default")
    assert next(c for c in job["status"]["conditions"] if c["type"] == "Failed")["reason"] == "RayJobMissing"
    wait_until(lambda: "RayJobMissing" in event_reasons(kube, "orphaned"), what="RayJobMissing event")
    assert creates(kube, at_least=1) == 1  # the first one only: never recreated


def test_all_namespaces_mode_serves_namespaces_created_later(kube, start_operator):
    start_operator(namespaces=("*all*",))
    kube.create_namespace("team-late")
    kube.create(runnable_job("late", namespace="team-late"))
    rayjob = kube.wait_for(RAYJOBS, "late", lambda obj: True, "team-late")
    assert rayjob["metadata"]["namespace"] == "team-late"
    kube.wait_for(JOBS, "late", phase_is("Pending"), "team-late")
