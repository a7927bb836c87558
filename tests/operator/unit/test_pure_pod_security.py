"""Every pod the operator creates (Ray head, workers, submitter, cleanup Job) is locked
down and bounded: not root, no privilege escalation, no capabilities, seccomp
RuntimeDefault, CPU and memory limits on every container; the cleanup Job's root
filesystem is read-only (Ray's pods write under theirs: see builders/pods.py)."""

from __future__ import annotations

import pytest

from pure_helpers import example_jobs, stored_job
from finetune_operator import builders
from finetune_operator.api import FineTuneJob
from finetune_operator.settings import Settings

SETTINGS = Settings()


def _pods(job_obj: dict, spec) -> list[tuple[str, dict]]:
    rayjob = builders.build_rayjob(job_obj, spec, SETTINGS)
    cluster = rayjob["spec"]["rayClusterSpec"]
    pods = [("head", cluster["headGroupSpec"]["template"]["spec"])]
    pods += [(f"worker:{g['groupName']}", g["template"]["spec"]) for g in cluster.get("workerGroupSpecs", [])]
    pods.append(("submitter", rayjob["spec"]["submitterPodTemplate"]["spec"]))
    cleanup_obj = {**job_obj, "spec": {**job_obj["spec"], "outputPolicy": "Delete"}}
    pods.append(("cleanup", builders.build_cleanup_job(cleanup_obj, SETTINGS)["spec"]["template"]["spec"]))
    return pods


CASES = [(case_id, document, FineTuneJob.model_validate(document).spec) for case_id, document in example_jobs()]
CASES.append(("gpu", *stored_job(resources={"worker": {"gpu": 2, "cpu": "8", "memory": "32Gi"}})))


@pytest.mark.parametrize("case_id,job_obj,spec", CASES, ids=[c[0] for c in CASES])
def test_every_pod_and_container_is_locked_down_and_bounded(case_id, job_obj, spec):
    pods = _pods(job_obj, spec)
    assert [role for role, _ in pods][-2:] == ["submitter", "cleanup"] and len(pods) >= 4
    for role, pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True, role
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, role
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{role}/{container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert "privileged" not in context or context["privileged"] is False, where
            limits = container["resources"]["limits"]
            assert {"cpu", "memory"} <= set(limits), f"{where} has no CPU or memory limit: {limits}"
            assert context.get("readOnlyRootFilesystem", False) is (role == "cleanup"), where
    cleanup = dict(pods)["cleanup"]
    assert cleanup["automountServiceAccountToken"] is False
    mounts = {m["mountPath"] for m in cleanup["containers"][0]["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable place on a read-only root
