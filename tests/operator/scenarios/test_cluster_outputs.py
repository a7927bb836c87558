"""A job the operator runs needs shared storage for its outputs (issue 11)."""

from __future__ import annotations

from tests.operator.scenarios.conftest import JOBS, RAYJOBS, creates, event_reasons, phase_is, wait_until
from tests.support.jobs import runnable_job


def test_a_local_output_uri_is_refused_naming_the_field(kube, operator):
    kube.create(runnable_job("localout", output={"uri": "outputs/models"}))
    job = kube.wait_for(JOBS, "localout", phase_is("Failed"), "default")
    assert job["status"]["message"].startswith("output.uri: 'outputs/models'")
    assert "s3://" in job["status"]["message"]
    accepted = next(c for c in job["status"]["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "StorageNotAllowed")
    wait_until(lambda: "StorageNotAllowed" in event_reasons(kube, "localout"), what="StorageNotAllowed event")
    # Counted, not looked up once: no create was even tried (a refused job claims no RayJob name).
    assert "rayJobName" not in job["status"]
    assert creates(kube) == 0
