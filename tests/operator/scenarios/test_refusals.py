"""What the operator refuses, and how it says so."""

from __future__ import annotations

from tests.operator.scenarios.conftest import (
    creates,
    JOBS,
    RAYJOBS,
    event_reasons,
    phase_is,
    wait_until,
)
from tests.support.jobs import runnable_job


def test_forbidden_spec_change_is_refused_and_the_rayjob_is_untouched(kube, operator):
    kube.create(runnable_job("fixed"))
    rayjob = kube.wait_for(RAYJOBS, "fixed", lambda obj: True, "default")
    kube.wait_for(JOBS, "fixed", phase_is("Pending"), "default")

    kube.patch(JOBS, "fixed", {"spec": {"training": {"learningRate": 0.1}, "resources": {"workers": 3}}}, "default")
    job = kube.wait_for(JOBS, "fixed", lambda j: "cannot change" in ((j.get("status") or {}).get("message") or ""),
                        "default")
    assert "resources.workers" in job["status"]["message"]
    assert "training.learningRate" in job["status"]["message"]
    wait_until(lambda: "SpecChangeRefused" in event_reasons(kube, "fixed"), what="SpecChangeRefused event")
    after = kube.get(RAYJOBS, "fixed", "default")
    assert after["metadata"]["resourceVersion"] == rayjob["metadata"]["resourceVersion"]
    assert after["spec"] == rayjob["spec"]


def test_invalid_spec_fails_without_a_rayjob(kube, operator):
    # The CRD schema cannot check a regular expression; the shared validator can.
    kube.create(runnable_job("badregex", strategy={"type": "partial", "partial": {"freezePatterns": ["(open"]}}))
    job = kube.wait_for(JOBS, "badregex", phase_is("Failed"), "default")
    assert "freezePatterns" in job["status"]["message"]
    accepted = next(c for c in job["status"]["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    wait_until(lambda: "InvalidSpec" in event_reasons(kube, "badregex"), what="InvalidSpec event")
    assert "rayJobName" not in job["status"]
    assert creates(kube) == 0
    assert creates(kube, "configmaps") == 0


def test_output_outside_the_namespace_prefix_is_refused(kube, start_operator):
    start_operator(env={"FINETUNE_STORAGE_PREFIXES": '{"default": "s3://team-default/"}'})
    kube.create(runnable_job("elsewhere", output={"uri": "s3://someone-else/models"}))
    job = kube.wait_for(JOBS, "elsewhere", phase_is("Failed"), "default")
    assert "s3://team-default/" in job["status"]["message"]
    wait_until(lambda: "StorageNotAllowed" in event_reasons(kube, "elsewhere"), what="StorageNotAllowed event")
    assert "rayJobName" not in job["status"]
    assert creates(kube) == 0


def test_missing_secret_holds_the_job_until_the_secret_exists(kube, operator):
    kube.create(runnable_job("creds", output={"secretRef": {"name": "s3-creds"}}))
    job = kube.wait_for(JOBS, "creds", lambda j: "s3-creds" in ((j.get("status") or {}).get("message") or ""),
                        "default")
    assert job["status"]["phase"] == "Queued"
    wait_until(lambda: "SecretNotFound" in event_reasons(kube, "creds"), what="SecretNotFound event")
    assert creates(kube) == 0

    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds", "namespace": "default"},
                 "stringData": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}})
    kube.wait_for(RAYJOBS, "creds", lambda obj: True, "default", timeout=15)
    kube.wait_for(JOBS, "creds", phase_is("Pending"), "default")


def test_rayjob_of_someone_else_is_not_adopted(kube, operator):
    kube.create({
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": {"name": "taken", "namespace": "default"},
        "spec": {"entrypoint": "python other.py"},
    })
    kube.create(runnable_job("taken"))
    job = kube.wait_for(JOBS, "taken", phase_is("Failed"), "default")
    assert "not owned by this FineTuneJob" in job["status"]["message"]
    assert kube.get(RAYJOBS, "taken", "default")["spec"]["entrypoint"] == "python other.py"
