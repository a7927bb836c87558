"""outputPolicy Delete: the only jobs with a finalizer; deletion waits for a cleanup Job."""

from __future__ import annotations

import pytest

from finetune_operator.naming import cleanup_job_name
from tests.operator.scenarios.conftest import (
    JOBS,
    RAYJOBS,
    metric_value,
    phase_is,
    set_rayjob_state,
    wait_until,
)
from tests.support.jobs import runnable_job


def test_retained_jobs_carry_no_finalizer(kube, operator):
    kube.create(runnable_job("kept"))
    kube.wait_for(JOBS, "kept", phase_is("Pending"), "default")
    # Not looked at once right after the flip: two more reconciles (the resync timer)
    # have run since, and neither added one.
    seen = _reconciles(operator)
    wait_until(lambda: _reconciles(operator) >= seen + 2, timeout=15, what="two more reconciles")
    assert not kube.get(JOBS, "kept", "default")["metadata"].get("finalizers")


def test_delete_policy_runs_a_cleanup_job_before_the_job_goes(kube, operator):
    kube.create(runnable_job("scratch", outputPolicy="Delete", output={"secretRef": {"name": "s3"}}))
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3", "namespace": "default"},
                 "stringData": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}})
    kube.wait_for(RAYJOBS, "scratch", lambda obj: True, "default", timeout=15)
    job = kube.wait_for(JOBS, "scratch", lambda j: "finetune.dev/cleanup" in (j["metadata"].get("finalizers") or []),
                        "default")

    kube.delete(JOBS, "scratch", "default")
    name = cleanup_job_name("scratch")
    cleanup = kube.wait_for("jobs", name, lambda obj: True, "default")
    container = cleanup["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "s3"}}]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["FINETUNE_RUN_NAME"] == "default-scratch"
    assert '"uri": "s3://models/reviews"' in env["FINETUNE_OUTPUT"]
    assert kube.exists(JOBS, "scratch", "default"), "the finalizer must hold the job until cleanup ends"

    # Play the Job controller: the cleanup succeeded.
    kube.patch_status("jobs", name, {"succeeded": 1}, "default")
    kube.wait_gone(JOBS, "scratch", "default", timeout=30)
    assert job["metadata"]["uid"]


# ------------------------------------------------------------- a clean deletion is quiet


def _loud_lines(operator) -> list[str]:
    """Log records at WARNING or above (the CLI logs `LEVEL logger: message`)."""
    text = operator.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if line.split(" ", 1)[0] in ("WARNING", "ERROR", "CRITICAL")]


def _reconciles(operator) -> float:
    return metric_value(operator.metrics(), "finetune_operator_reconcile_duration_seconds_count") or 0


def _delete_policy_job(kube, name: str) -> dict:
    kube.create(runnable_job(name, outputPolicy="Delete"))
    kube.wait_for(RAYJOBS, name, lambda obj: True, "default", timeout=15)
    return kube.wait_for(JOBS, name, lambda j: "finetune.dev/cleanup" in (j["metadata"].get("finalizers") or []),
                         "default")


def test_waiting_for_a_slow_cleanup_job_logs_no_error(kube, operator):
    _delete_policy_job(kube, "slow-clean")
    kube.delete(JOBS, "slow-clean", "default")
    name = cleanup_job_name("slow-clean")
    kube.wait_for("jobs", name, lambda obj: True, "default")
    # The cleanup Job runs on while the operator looks at it several times.
    polls = kube.request_count("get", "jobs")
    wait_until(lambda: kube.request_count("get", "jobs") >= polls + 3, timeout=30, what="three polls of the Job")
    assert kube.exists(JOBS, "slow-clean", "default")
    # Its first pod fails and the Job controller starts another: still waiting.
    kube.patch_status("jobs", name, {"active": 1, "failed": 1}, "default")
    polls = kube.request_count("get", "jobs")
    wait_until(lambda: kube.request_count("get", "jobs") >= polls + 2, timeout=30, what="two more polls")
    assert kube.exists(JOBS, "slow-clean", "default")

    kube.patch_status("jobs", name, {"succeeded": 1}, "default")
    kube.wait_gone(JOBS, "slow-clean", "default", timeout=30)
    assert _loud_lines(operator) == [], operator.log()
    assert not [e for e in kube.list("events", "default") if e.get("type") == "Warning"]
    waits = [line for line in operator.log_path.read_text().splitlines() if "waiting for output cleanup" in line]
    assert len(waits) == 1 and waits[0].startswith("INFO "), waits


@pytest.mark.parametrize("kuberay_finalizer", [False, True], ids=["at once", "KubeRay finalizer"])
@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_deleting_a_job_whose_rayjob_is_already_gone_logs_no_error(kube, operator, policy, kuberay_finalizer):
    kube.create(runnable_job("gone", outputPolicy=policy))
    kube.wait_for(RAYJOBS, "gone", lambda obj: True, "default", timeout=15)
    kube.wait_for(JOBS, "gone", lambda j: (j.get("status") or {}).get("startTime"), "default")
    set_rayjob_state(kube, "gone", "Running", "RUNNING")
    kube.wait_for(JOBS, "gone", phase_is("Running"), "default")
    if kuberay_finalizer:  # KubeRay holds a deleted RayJob until its Ray cluster is gone
        kube.patch(RAYJOBS, "gone", {"metadata": {"finalizers": ["ray.io/rayjob-finalizer"]}}, "default")
    kube.delete(RAYJOBS, "gone", "default")  # by hand, before the job
    if kuberay_finalizer:
        seen = _reconciles(operator)
        wait_until(lambda: _reconciles(operator) >= seen + 2, timeout=15, what="reconciles of the deleting RayJob")
        kube.patch(RAYJOBS, "gone", {"metadata": {"finalizers": None}}, "default")
    kube.wait_for(JOBS, "gone", phase_is("Failed"), "default")

    kube.delete(JOBS, "gone", "default")
    if policy == "Delete":
        name = cleanup_job_name("gone")
        kube.wait_for("jobs", name, lambda obj: True, "default")
        kube.patch_status("jobs", name, {"succeeded": 1}, "default")
    kube.wait_gone(JOBS, "gone", "default", timeout=30)
    assert _loud_lines(operator) == [], operator.log()


@pytest.mark.emulator_only("injects a 404 into the operator's status patch")
def test_a_job_gone_before_its_status_write_is_no_error(kube, operator):
    """The status write of a job deleted meanwhile gets a 404: the reconcile ends
    quietly, and the next one (the job is still here in this test) writes it."""
    kube.create(runnable_job("racy"))
    kube.wait_for(RAYJOBS, "racy", lambda obj: True, "default", timeout=15)
    set_rayjob_state(kube, "racy", "Running", "RUNNING")
    kube.wait_for(JOBS, "racy", phase_is("Running"), "default")
    kube.fail_next("patch", JOBS, code=404)
    set_rayjob_state(kube, "racy", "Complete", "SUCCEEDED")
    kube.wait_for(JOBS, "racy", phase_is("Succeeded"), "default")
    assert _loud_lines(operator) == [], operator.log()
