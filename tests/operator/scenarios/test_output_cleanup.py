"""outputPolicy Delete: the only jobs with a finalizer; deletion waits for a cleanup Job."""

from __future__ import annotations

from finetune_operator.reconcile import cleanup_job_name
from tests.operator.scenarios.conftest import JOBS, RAYJOBS, job_manifest, phase_is


def test_retained_jobs_carry_no_finalizer(kube, operator):
    kube.create(job_manifest("kept"))
    job = kube.wait_for(JOBS, "kept", phase_is("Pending"), "default")
    assert not job["metadata"].get("finalizers")


def test_delete_policy_runs_a_cleanup_job_before_the_job_goes(kube, operator):
    kube.create(job_manifest("scratch", outputPolicy="Delete", output={"secretRef": {"name": "s3"}}))
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
