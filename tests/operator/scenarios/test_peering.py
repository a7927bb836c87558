"""Two replicas with kopf peering: only the higher priority one works; the other
takes over when it leaves."""

from __future__ import annotations

from tests.operator.scenarios.conftest import (
    JOBS,
    RAYJOBS,
    metric_value,
    phase_is,
    wait_until,
)
from tests.support.jobs import runnable_job

RECONCILES = "finetune_operator_reconcile_duration_seconds_count"


def test_standby_replica_stays_idle_and_takes_over(kube, start_operator):
    # The chart creates the peering object; kopf does not.
    kube.create({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                 "metadata": {"name": "ft", "namespace": "default"}})
    # A replica starts paused and resumes if the first peering record it reads has no
    # higher priority peer, so the standby starts only once the active one is recorded.
    active = start_operator(peering=["--peering-name", "ft", "--priority", "20"])
    wait_until(lambda: len(peers(kube)) == 1, what="the active replica in the peering record")
    standby = start_operator(peering=["--peering-name", "ft", "--priority", "10"])
    wait_until(lambda: len(peers(kube)) == 2, what="both replicas in the peering record")

    kube.create(runnable_job("during-active"))
    kube.wait_for(JOBS, "during-active", phase_is("Pending"), "default")
    # The duration is observed when the whole reconcile returns, just after the status patch.
    wait_until(lambda: (metric_value(active.metrics(), RECONCILES) or 0) >= 1,
               what="the active replica's reconcile in its metrics")
    assert (metric_value(standby.metrics(), RECONCILES) or 0) == 0, "the standby replica reconciled"
    assert "Resuming operations" not in standby.log()

    active.stop()  # a clean shutdown removes its peering record at once
    wait_until(lambda: "Resuming operations" in standby.log(), timeout=20, what="the standby to resume")
    kube.create(runnable_job("after-failover"))
    kube.wait_for(RAYJOBS, "after-failover", lambda obj: True, "default", timeout=30)
    kube.wait_for(JOBS, "after-failover", phase_is("Pending"), "default")
    assert (metric_value(standby.metrics(), RECONCILES) or 0) >= 1


def peers(kube) -> dict:
    return kube.get("kopfpeerings", "ft", "default").get("status") or {}
