"""Operator restarts, API errors and dropped watch streams: no duplicates, convergence."""

from __future__ import annotations

import pytest

from finetune_operator import naming

from tests.operator.scenarios.conftest import (
    JOBS,
    RAYJOBS,
    phase_is,
    set_rayjob_state,
    wait_until,
)
from tests.support.jobs import runnable_job


@pytest.mark.emulator_only("holds RayJob creation with injected 500s, so the kill lands mid-flight for sure")
def test_operator_killed_mid_flight_restarts_without_duplicates(kube, start_operator):
    roomy = {"FINETUNE_CONCURRENCY_LIMIT": "100"}
    operator = start_operator(env=roomy)
    done = ["job-0", "job-1"]
    for name in done:
        kube.create(runnable_job(name))
    for name in done:
        kube.wait_for(RAYJOBS, name, lambda obj: True, "default", timeout=20)

    # From here every RayJob create fails, so the next jobs stop half-way: their
    # RayJob's name recorded in status, the RayJob itself not there.
    creates_before = kube.request_count("create", RAYJOBS)
    kube.fail_next("create", RAYJOBS, code=500, times=10**6)
    stuck = [f"job-{i}" for i in range(2, 8)]
    for name in stuck:
        kube.create(runnable_job(name))
    for name in stuck:
        kube.wait_for(JOBS, name, lambda obj: (obj.get("status") or {}).get("rayJobName") == name, "default",
                      timeout=20)
    wait_until(lambda: kube.request_count("create", RAYJOBS) - creates_before >= len(stuck),
               what="a RayJob create tried for each stuck job")
    assert sorted(r["metadata"]["name"] for r in kube.list(RAYJOBS, "default")) == done
    operator.kill()
    kube.clear_faults()
    set_rayjob_state(kube, "job-0", "Running", "RUNNING")

    creates_before = kube.request_count("create", RAYJOBS)
    start_operator(env=roomy)
    for name in stuck:
        kube.wait_for(RAYJOBS, name, lambda obj: True, "default", timeout=20)
    kube.wait_for(JOBS, "job-0", phase_is("Running"), "default", timeout=20)
    for name in ["job-1", *stuck]:
        kube.wait_for(JOBS, name, phase_is("Pending"), "default", timeout=20)
    rayjobs = kube.list(RAYJOBS, "default")
    assert sorted(r["metadata"]["name"] for r in rayjobs) == sorted(done + stuck)
    # The restarted operator created only the missing RayJobs, once each: none for the
    # two that existed, none twice.
    assert kube.request_count("create", RAYJOBS) - creates_before == len(stuck)
    for rayjob in rayjobs:
        job = kube.get(JOBS, rayjob["metadata"]["name"], "default")
        assert rayjob["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
        assert job["status"]["rayJobName"] == rayjob["metadata"]["name"]


@pytest.mark.emulator_only("injects 500s and 409s")
def test_injected_server_errors_and_conflicts_converge(kube, operator):
    kube.fail_next("create", RAYJOBS, code=500, times=2)
    kube.fail_next("patch", JOBS, code=500, times=2)
    kube.create(runnable_job("flaky"))
    kube.wait_for(RAYJOBS, "flaky", lambda obj: True, "default", timeout=20)
    kube.wait_for(JOBS, "flaky", phase_is("Pending"), "default", timeout=20)

    kube.fail_next("create", RAYJOBS, code=409, times=1)
    kube.create(runnable_job("conflicted"))
    kube.wait_for(RAYJOBS, "conflicted", lambda obj: True, "default", timeout=20)
    kube.wait_for(JOBS, "conflicted", phase_is("Pending"), "default", timeout=20)


@pytest.mark.emulator_only("drops the operator's watch streams on demand")
def test_dropped_watch_streams_are_reopened(kube, operator):
    kube.create(runnable_job("before"))
    kube.wait_for(JOBS, "before", phase_is("Pending"), "default")
    wait_until(lambda: kube.open_watches() >= 2, what="operator watches open")
    assert kube.close_watches() >= 2
    kube.create(runnable_job("after"))
    kube.wait_for(RAYJOBS, "after", lambda obj: True, "default", timeout=20)
    set_rayjob_state(kube, "before", "Running", "RUNNING")
    kube.wait_for(JOBS, "before", phase_is("Running"), "default", timeout=20)


@pytest.mark.emulator_only("injects a 409 on a create whose object does not exist")
def test_a_configmap_conflict_with_no_configmap_is_retried_before_the_rayjob(kube, operator):
    # Found by `make chaos` (the API-fault loop): a 409 on the ConfigMap's create was
    # taken to mean it existed, so the RayJob was created without its ConfigMap and
    # nothing ever created it. A 409 for an object that is not there (one deleted
    # between the two requests, or a 409 of another kind) must be retried instead.
    kube.fail_next("create", "configmaps", code=409, times=1)
    kube.create(runnable_job("cm-conflict"))
    kube.wait_for(RAYJOBS, "cm-conflict", lambda obj: True, "default", timeout=20)
    # The ConfigMap is created before the RayJob, so it is there once the RayJob is.
    assert kube.exists("configmaps", naming.configmap_name("cm-conflict"), "default")
    assert kube.request_count("create", "configmaps") == 2
    kube.wait_for(JOBS, "cm-conflict", phase_is("Pending"), "default", timeout=20)
