"""Two controllers (as two replicas with peering absent would run) on one job, one of
them acting on a read taken before the other claimed and started the job.

Found by `make chaos` (two replicas): the stale one saw no status.rayJobName, so it
never looked for the RayJob; its admission write came back with the other replica's
startTime, and "started, but no RayJob" failed the job as RayJobMissing while its
RayJob ran on, which also freed its slot for a job over the concurrency limit. The
claim is now written only if the job is unchanged since it was read (a
resourceVersion precondition), so the stale controller gets a conflict and retries.
"""

from __future__ import annotations

import asyncio

import kopf
import pytest

from finetune_operator import kube as kube_api
from finetune_operator.reconcile import Controller
from finetune_operator.settings import Settings
from tests.operator.scenarios.conftest import JOBS, set_rayjob_state
from tests.support.jobs import runnable_job


@pytest.mark.emulator_only("drives two in-process controllers at chosen moments; the race needs no server feature")
def test_a_stale_read_cannot_fail_a_job_another_replica_started(kube, monkeypatch):
    monkeypatch.setattr(Controller, "_event", lambda self, job, reason, message: None)  # no kopf poster here
    kube.create(runnable_job("raced"))
    stale = kube.get(JOBS, "raced", "default")  # replica b reads the job: no status yet

    async def race() -> None:
        async with kube_api.standalone(kube.url) as api:
            first, second = Controller(api, Settings()), Controller(api, Settings())
            await first.reconcile("default", "raced", queue=[])  # replica a claims it, creates the RayJob
            set_rayjob_state(kube, "raced", "Running", "RUNNING")
            await first.reconcile("default", "raced", queue=[])  # and sees it start
            with pytest.raises(kopf.TemporaryError, match="(?i)conflict"):
                await second.reconcile("default", "raced", queue=[], body=stale)
            await second.reconcile("default", "raced", queue=[])  # kopf's retry reads afresh

    asyncio.run(race())
    status = kube.get(JOBS, "raced", "default")["status"]
    assert status["phase"] == "Running", status
    assert status["rayJobName"] == "raced"
