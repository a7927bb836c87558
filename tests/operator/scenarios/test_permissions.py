"""The RBAC rules cover every request the operator really makes, and nothing is
declared that the code does not use."""

from __future__ import annotations

import pytest

import inspect

from finetune_operator import kube as kube_module
from finetune_operator.permissions import API_OPERATIONS, REQUIRED_PERMISSIONS
from tests.operator.scenarios.conftest import (
    JOBS,
    RAYJOBS,
    progress_line,
    set_rayjob_state,
    start_submitter,
)
from tests.support.jobs import runnable_job


def _allowed(verb: str, plural: str) -> bool:
    for rule in REQUIRED_PERMISSIONS:
        for resource in rule["resources"]:
            if resource.split("/")[0] == plural and verb in rule["verbs"]:
                return True
    return False


@pytest.mark.emulator_only("reads the submitter pod's log and the emulator's request counts; on the real server test_realkube_rbac checks the chart's RBAC against the audit log")
def test_every_request_of_a_full_lifecycle_is_covered_by_the_rules(kube, operator):
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3", "namespace": "default"},
                 "stringData": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}})
    kube.create(runnable_job("audited", outputPolicy="Delete", output={"secretRef": {"name": "s3"}}))
    kube.wait_for(RAYJOBS, "audited", lambda obj: True, "default")
    set_rayjob_state(kube, "audited", "Running", "RUNNING")
    start_submitter(kube, "audited", progress_line(step=1, totalSteps=4, percent=25.0))
    kube.wait_for(JOBS, "audited", lambda j: (j.get("status") or {}).get("progress", {}).get("step") == 1, "default")
    kube.patch(JOBS, "audited", {"spec": {"scheduling": {"suspend": True}}}, "default")
    kube.wait_for(RAYJOBS, "audited", lambda obj: obj["spec"]["suspend"] is True, "default")
    kube.delete(JOBS, "audited", "default")
    kube.wait_for("jobs", "audited-cleanup", lambda obj: True, "default")

    counts = kube._call(lambda: dict(kube.store.request_counts))
    made = {key for key, count in counts.items() if count}
    for needed in [("create", "rayjobs"), ("create", "configmaps"), ("patch", "finetunejobs"),
                   ("list", "pods"), ("create", "jobs"), ("create", "events"), ("watch", "rayjobs")]:
        assert needed in made, f"the scenario did not exercise {needed}"
    uncovered = sorted(key for key in made if not _allowed(*key))
    assert not uncovered, f"requests not covered by REQUIRED_PERMISSIONS: {uncovered}"


def test_every_api_function_declares_a_permission_and_every_declared_one_is_used():
    declared = {
        name: getattr(fn, "__finetune_permission__", None)
        for name, fn in inspect.getmembers(kube_module.KubeApi, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert declared, "KubeApi has no public API functions"
    missing = sorted(name for name, operation in declared.items() if operation is None)
    assert not missing, f"KubeApi functions without @needs(...): {missing}"
    unused = sorted(set(API_OPERATIONS) - set(declared.values()))
    assert not unused, f"permissions declared but used by no API function: {unused}"


def test_rules_are_rbac_policy_rules_without_wildcards():
    for rule in REQUIRED_PERMISSIONS:
        assert set(rule) == {"apiGroups", "resources", "verbs"}
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    pairs = [(tuple(r["apiGroups"]), tuple(r["resources"])) for r in REQUIRED_PERMISSIONS]
    assert len(pairs) == len(set(pairs)), "one rule per (apiGroup, resource)"
    by_resource = {(r["apiGroups"][0], r["resources"][0]): set(r["verbs"]) for r in REQUIRED_PERMISSIONS}
    assert by_resource[("finetune.dev", "finetunejobs/status")] == {"patch"}
    assert by_resource[("", "secrets")] == {"get"}, "a named Secret is looked up; Secrets are never listed or watched"
