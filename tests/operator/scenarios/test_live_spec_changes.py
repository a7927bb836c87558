"""Spec changes a live job allows (api.MUTABLE_SPEC_PATHS): accepted without a
Warning, and passed on to the running RayJob."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from finetune_operator.api import MUTABLE_SPEC_PATHS
from finetune_operator.cluster_defaults import rayjob_ttl
from tests.operator.scenarios.conftest import (
    JOBS,
    RAYJOBS,
    events_for,
    metric_value,
    phase_is,
    set_rayjob_state,
    wait_until,
)
from tests.support.jobs import runnable_job

# A new value for each mutable path, and the Event that reports it.
CHANGES = {
    ("scheduling", "suspend"): (True, "Suspended"),
    ("scheduling", "ttlSecondsAfterFinished"): (30, "RayJobUpdated"),
    ("scheduling", "activeDeadlineSeconds"): (3600, "RayJobUpdated"),
}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _field(rayjob: dict, leaf: str):
    """The RayJob's value for a FineTuneJob scheduling field (the TTL may live in
    KubeRay's deletion rules)."""
    return rayjob_ttl(rayjob["spec"]) if leaf == "ttlSecondsAfterFinished" else rayjob["spec"].get(leaf)


def _running(kube, name: str) -> dict:
    rayjob = kube.wait_for(RAYJOBS, name, lambda obj: True, "default")
    set_rayjob_state(kube, name, "Running", "RUNNING", startTime=_now())
    kube.wait_for(JOBS, name, phase_is("Running"), "default")
    return rayjob


def _warnings(kube, name: str) -> list[str]:
    return [f"{e.get('reason')}: {e.get('message')}" for e in events_for(kube, name) if e.get("type") == "Warning"]


def test_every_mutable_path_is_covered():
    assert set(CHANGES) == set(MUTABLE_SPEC_PATHS)


@pytest.mark.parametrize("path", MUTABLE_SPEC_PATHS, ids=".".join)
def test_a_permitted_change_without_a_scheduling_block_reaches_the_rayjob(kube, operator, path):
    parent, leaf = path
    value, reason = CHANGES[path]
    manifest = runnable_job("live")
    assert parent not in manifest["spec"]  # the reported case: the block did not exist
    kube.create(manifest)
    before = _running(kube, "live")
    assert _field(before, leaf) != value

    kube.patch(JOBS, "live", {"spec": {parent: {leaf: value}}}, "default")
    rayjob = kube.wait_for(RAYJOBS, "live", lambda obj: _field(obj, leaf) == value, "default")
    event = wait_until(lambda: next((e for e in events_for(kube, "live") if e.get("reason") == reason), None),
                       what=f"{reason} event")
    if reason == "RayJobUpdated":
        assert f"{leaf} " in event["message"] and f"-> {value}" in event["message"]
    # Nothing else of the RayJob moved.
    moved = {leaf, "deletionStrategy"} if leaf == "ttlSecondsAfterFinished" else {leaf}
    assert {k: v for k, v in rayjob["spec"].items() if k not in moved} == \
        {k: v for k, v in before["spec"].items() if k not in moved}
    job = kube.get(JOBS, "live", "default")
    assert "cannot change" not in (job["status"].get("message") or "")
    assert _warnings(kube, "live") == []


def test_an_extended_deadline_lets_the_job_run_on(kube, operator):
    old_deadline = 6
    kube.create(runnable_job("long", scheduling={"activeDeadlineSeconds": old_deadline}))
    rayjob = _running(kube, "long")
    assert rayjob["spec"]["activeDeadlineSeconds"] == old_deadline
    started = time.monotonic()

    kube.patch(JOBS, "long", {"spec": {"scheduling": {"activeDeadlineSeconds": 3600}}}, "default")
    kube.wait_for(RAYJOBS, "long", lambda obj: obj["spec"].get("activeDeadlineSeconds") == 3600, "default")
    event = wait_until(lambda: next((e for e in events_for(kube, "long") if e.get("reason") == "RayJobUpdated"),
                                    None), what="RayJobUpdated event")
    assert f"activeDeadlineSeconds {old_deadline} -> 3600" in event["message"]

    # Past the old deadline, and reconciled (resync every second) at least twice since.
    wait_until(lambda: time.monotonic() - started > old_deadline + 1, timeout=old_deadline + 5,
               what="the old deadline to pass")

    def reconciles() -> float:
        return metric_value(operator.metrics(), "finetune_operator_reconcile_duration_seconds_count") or 0

    seen = reconciles()
    wait_until(lambda: reconciles() >= seen + 2, timeout=15, what="two more reconciles")
    job = kube.get(JOBS, "long", "default")
    assert job["status"]["phase"] == "Running", job["status"]
    assert kube.exists(RAYJOBS, "long", "default")
    assert _warnings(kube, "long") == []


@pytest.mark.emulator_only("injects a 404 into the operator's RayJob patch")
def test_a_rayjob_gone_between_read_and_patch_is_no_error(kube, operator):
    """A 404 from an object that went away while the operator worked is not an error:
    the next reconcile reads the world again."""
    kube.create(runnable_job("racy"))
    _running(kube, "racy")
    kube.fail_next("patch", RAYJOBS, code=404)
    kube.patch(JOBS, "racy", {"spec": {"scheduling": {"ttlSecondsAfterFinished": 5}}}, "default")
    kube.wait_for(RAYJOBS, "racy", lambda obj: rayjob_ttl(obj["spec"]) == 5, "default")
    text = operator.log_path.read_text(errors="replace")
    assert [line for line in text.splitlines() if line.split(" ", 1)[0] in ("WARNING", "ERROR", "CRITICAL")] == [], \
        operator.log()
