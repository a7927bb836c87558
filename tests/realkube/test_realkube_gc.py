"""Garbage collection for real: kube-controller-manager's garbage collector, not the
emulator's synchronous cascade, removes what the operator made for a job.

The operator (standalone, admin identity; RBAC is tested in test_realkube_rbac) creates
a job's RayJob and ConfigMap with an ownerReference to the FineTuneJob. Deleting the
FineTuneJob with each propagation policy must then do what Kubernetes documents:

- Background (kubectl's default): the job goes at once, its children after it;
- Foreground: the job stays, marked `foregroundDeletion`, until its children are gone
  (they carry `blockOwnerDeletion`);
- Orphan: the children stay, no longer owned by the job.
"""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from tests.support.jobs import runnable_job
from tests.support.real_kube import ADMIN, RealKube, api_path

pytestmark = pytest.mark.kube

FTJ = "finetune.dev/v1alpha1"


@pytest.fixture
def collector(real_kube: RealKube) -> Iterator[RealKube]:
    real_kube.start_controller_manager()
    try:
        yield real_kube
    finally:
        real_kube.stop_controller_manager()


def owned_by(kube: RealKube, namespace: str, uid: str) -> dict[str, list[str]]:
    """Names of the RayJobs and ConfigMaps in `namespace` whose ownerReferences name `uid`."""
    out = {}
    for kind, path in (("rayjobs", api_path("ray.io/v1", "rayjobs", namespace)),
                       ("configmaps", api_path("v1", "configmaps", namespace))):
        items = (kube.get(path) or {}).get("items", [])
        out[kind] = sorted(o["metadata"]["name"] for o in items
                           if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or []))
    return out


def children(kube: RealKube, namespace: str) -> dict[str, list[str]]:
    """Every RayJob and ConfigMap in `namespace` (the operator's and nothing else)."""
    out = {}
    for kind, path in (("rayjobs", api_path("ray.io/v1", "rayjobs", namespace)),
                       ("configmaps", api_path("v1", "configmaps", namespace))):
        out[kind] = sorted(o["metadata"]["name"] for o in (kube.get(path) or {}).get("items", [])
                           if o["metadata"]["name"] != "kube-root-ca.crt")
    return out


def started_job(kube: RealKube, run_operator: Callable, namespace: str) -> tuple[str, str, dict[str, list[str]]]:
    """A FineTuneJob whose RayJob and ConfigMap the operator has made: (path, uid, children)."""
    kube.create_namespace(namespace)
    run_operator(kube.write_kubeconfig(ADMIN, namespace), ["--standalone", f"--namespace={namespace}"])
    created = kube.create(runnable_job("gc", namespace))
    path = api_path(FTJ, "finetunejobs", namespace, "gc")
    job = kube.wait_for(path, lambda o: ((o or {}).get("status") or {}).get("rayJobName"), timeout=60,
                        what="status.rayJobName")
    # The name is recorded before the RayJob is created: wait for the RayJob itself.
    kube.wait_for(api_path("ray.io/v1", "rayjobs", namespace, job["status"]["rayJobName"]), lambda o: o is not None,
                  timeout=60, what="the RayJob")
    uid = created["metadata"]["uid"]
    made = owned_by(kube, namespace, uid)
    assert len(made["rayjobs"]) == 1 and len(made["configmaps"]) == 1, made
    return path, uid, made


def test_background_deletion_removes_the_children_after_the_job(collector: RealKube, run_operator):
    namespace = "gc-background"
    path, uid, made = started_job(collector, run_operator, namespace)
    collector.delete(path, propagationPolicy="Background")
    collector.wait_for(path, lambda o: o is None, timeout=60, what="the FineTuneJob gone")
    collector.wait_for(api_path("ray.io/v1", "rayjobs", namespace, made["rayjobs"][0]), lambda o: o is None,
                       timeout=60, what="the RayJob collected")
    collector.wait_for(api_path("v1", "configmaps", namespace, made["configmaps"][0]), lambda o: o is None,
                       timeout=60, what="the ConfigMap collected")
    assert children(collector, namespace) == {"rayjobs": [], "configmaps": []}


def test_foreground_deletion_keeps_the_job_until_its_children_are_gone(collector: RealKube, run_operator):
    namespace = "gc-foreground"
    path, uid, made = started_job(collector, run_operator, namespace)
    collector.delete(path, propagationPolicy="Foreground")
    # Every time the job is seen it is marked for deletion and waits for its children;
    # it is never gone while one of them is left.

    def settled(obj):
        if obj is None:
            return True
        assert obj["metadata"].get("deletionTimestamp"), obj["metadata"]
        assert "foregroundDeletion" in obj["metadata"].get("finalizers", [])
        return False

    collector.wait_for(path, settled, timeout=60, what="the FineTuneJob gone after its children")
    assert children(collector, namespace) == {"rayjobs": [], "configmaps": []}


def test_orphan_deletion_leaves_the_children_unowned(collector: RealKube, run_operator):
    namespace = "gc-orphan"
    path, uid, made = started_job(collector, run_operator, namespace)
    collector.delete(path, propagationPolicy="Orphan")
    collector.wait_for(path, lambda o: o is None, timeout=60, what="the FineTuneJob gone")
    assert children(collector, namespace) == made
    assert owned_by(collector, namespace, uid) == {"rayjobs": [], "configmaps": []}
