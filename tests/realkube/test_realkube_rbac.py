"""RBAC for real: the operator runs with exactly the identity our chart binds.

The chart is rendered by the Helm engine in both RBAC modes; its ClusterRole/Role and
bindings are applied to the real server, and the real `finetune operator` process runs
with the chart's ServiceAccount identity and the chart's own namespace flags. The test
plays KubeRay through the RayJob status subresource, takes one job to Succeeded and
deletes it. The API server's audit log then shows what the operator did:

- nothing it asked for was forbidden (a failure names verb and resource);
- what the chart grants and the operator never used is exactly `UNUSED_BY_DESIGN`
  (plus `UNUSED_IN_MODE`), each with the reason this flow does not reach it.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import pytest

from tests.support.jobs import runnable_job
from tests.support.paths import REPO
from tests.support.real_kube import OPERATOR_NAMESPACE, RealKube, api_path, service_account_user

sys.path.insert(0, str(REPO / "tests" / "deploy"))
from deploy_support import render  # noqa: E402  (the chart through the Helm engine)

pytestmark = pytest.mark.kube

Grant = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

# Granted, not used by a create -> run -> succeed -> delete flow of one standalone
# operator. Each is exercised elsewhere (tests/operator/scenarios) against the emulator.
UNUSED_BY_DESIGN: dict[Grant, str] = {
    **{("kopf.dev", resource, verb): "kopf peering: only with several replicas (--peering-name)"
       for resource in ("clusterkopfpeerings", "kopfpeerings") for verb in ("get", "list", "watch", "patch")},
    ("", "secrets", "get"): "only for a job with spec.output.secretRef",
    ("batch", "jobs", "create"): "the artifact-cleanup Job of outputPolicy Delete",
    ("batch", "jobs", "get"): "the artifact-cleanup Job of outputPolicy Delete",
    ("", "pods/log", "get"): "needs a submitter pod, which only KubeRay's Job controller would make",
    ("ray.io", "rayjobs", "delete"): "TTL clean-up with rayjob.deletion_rules off (KubeRay < 1.6); "
                                     "with deletion rules KubeRay removes the finished cluster itself",
    ("ray.io", "rayjobs", "patch"): "suspend and resume (spec.scheduling.suspend)",
    ("", "configmaps", "get"): "only when the job's ConfigMap already exists (a create retried after a crash)",
    ("apiextensions.k8s.io", "customresourcedefinitions", "get"):
        "not seen from kopf 1.45 here: its scanner lists and watches CRDs (a candidate to drop)",
}

# Per mode: the cluster-wide ClusterRole carries the namespace reads too, but with
# --all-namespaces kopf watches each resource cluster-wide and discovers no namespaces.
UNUSED_IN_MODE: dict[str, dict[Grant, str]] = {
    "cluster-wide": {("", "namespaces", verb): "kopf discovers namespaces only for --namespace lists"
                     for verb in ("list", "watch")},
    "namespaced": {},
}

MODES = {
    "cluster-wide": {"fullnameOverride": "ftop-cluster"},
    "namespaced": {"fullnameOverride": "ftop-namespaced", "watch": {"namespaces": ["rbac-namespaced"]}},
}
JOB_NAMESPACE = {"cluster-wide": "rbac-cluster", "namespaced": "rbac-namespaced"}
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def render_rbac(values: dict[str, Any]) -> tuple[list[dict], list[str], str]:
    """The chart's RBAC objects bound to its ServiceAccount, the operator's namespace flags
    from its Deployment, and the ServiceAccount's name."""
    objects = render(values)
    account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]
    assert account["namespace"] == OPERATOR_NAMESPACE
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    bindings = [o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding") and subject in o["subjects"]]
    bound = {(b["roleRef"]["kind"], b["roleRef"]["name"], b["metadata"].get("namespace")) for b in bindings}
    roles = [o for o in objects if o["kind"] in ("ClusterRole", "Role")
             and (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) in bound]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0].get("args", [])
    flags = [a for a in args if a.startswith(("--namespace", "--all-namespaces", "--standalone"))]
    return [*roles, *bindings], flags, account["name"]


def granted(objects: list[dict]) -> set[Grant]:
    return {(group, resource, verb)
            for role in objects if role["kind"] in ("ClusterRole", "Role")
            for rule in role["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}


def used(events: list[dict]) -> set[Grant]:
    out = set()
    for event in events:
        ref = event.get("objectRef") or {}
        if not ref.get("resource"):
            continue  # discovery and /version
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        out.add((ref.get("apiGroup", ""), resource, event["verb"]))
    return out


def forbidden(events: list[dict]) -> list[str]:
    """'verb resource in namespace' of each request the server refused with 403."""
    return sorted({f"{e['verb']} {e['objectRef'].get('resource')}"
                   f"{'/' + e['objectRef']['subresource'] if e['objectRef'].get('subresource') else ''}"
                   f" in {e['objectRef'].get('namespace', '(cluster)')}"
                   for e in events if e.get("responseStatus", {}).get("code") == 403})


def phase(kube: RealKube, path: str, *phases: str) -> dict:
    return kube.wait_for(path, lambda o: ((o or {}).get("status") or {}).get("phase") in phases, timeout=60,
                         what=f"phase {phases}")


@pytest.mark.parametrize("mode", MODES)
def test_operator_works_with_exactly_the_chart_rbac(mode: str, real_kube: RealKube,
                                                    run_operator: Callable) -> None:
    namespace = JOB_NAMESPACE[mode]
    real_kube.create_namespace(namespace)
    real_kube.create_namespace(OPERATOR_NAMESPACE)
    objects, flags, account = render_rbac(MODES[mode])
    real_kube.apply_all(objects)
    user = service_account_user(account)
    operator = run_operator(real_kube.write_kubeconfig(user, namespace), flags)

    try:
        ftj = api_path("finetune.dev/v1alpha1", "finetunejobs", namespace, "job1")
        real_kube.create(runnable_job("job1", namespace))
        created = real_kube.wait_for(ftj, lambda o: ((o or {}).get("status") or {}).get("rayJobName"), timeout=60,
                                     what="status.rayJobName")
        rayjob = api_path("ray.io/v1", "rayjobs", namespace, created["status"]["rayJobName"])
        real_kube.wait_for(rayjob, lambda o: o is not None, what="the RayJob")
        # KubeRay's part, through the real status subresource.
        real_kube.patch_status(rayjob, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING",
                                        "jobId": "job1-id", "rayClusterName": "job1-raycluster"})
        phase(real_kube, ftj, "Running")
        real_kube.patch_status(rayjob, {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "succeeded": 1})
        phase(real_kube, ftj, "Succeeded")
        real_kube.delete(ftj)
        real_kube.wait_for(ftj, lambda o: o is None, timeout=60, what="the FineTuneJob gone (finalizer released)")
    except AssertionError as stuck:
        # A flow stuck on a refused request says which one.
        refused = forbidden(real_kube.audit_events(user))
        if refused:
            raise AssertionError(f"the chart's RBAC ({mode}) refused the operator: {refused}") from stuck
        raise
    operator.stop()

    events = real_kube.audit_events(user)
    assert events, "the audit log has nothing from the operator"
    refused = forbidden(events)
    assert not refused, f"the chart's RBAC ({mode}) refused the operator: {refused}"
    grants = granted(objects)
    assert used(events) - grants == set(), "used without a grant (and not refused?)"
    unused = grants - used(events)
    documented = set(UNUSED_BY_DESIGN) | set(UNUSED_IN_MODE[mode])
    assert unused == documented, (
        f"granted but unused, not documented: {sorted(unused - documented)}; "
        f"documented but used now: {sorted(documented - unused)}")
