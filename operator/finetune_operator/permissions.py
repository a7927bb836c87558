"""Every Kubernetes permission the operator needs, in one table.

Each API call in `kube.py` names its operation here (`@needs("rayjobs.create")`), and
kopf's own machinery (watching, peering, posting events, progress annotations) is
listed beside them. `REQUIRED_PERMISSIONS` merges the table into RBAC rules, which the
Helm chart's ClusterRole is derived from and tested against; a test checks that every
API function declares an operation and that every operation is used, so the RBAC can
neither miss a verb nor grant a stale one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar


@dataclass(frozen=True)
class Permission:
    """One (apiGroup, resource, verb) the operator's service account must hold."""

    api_group: str
    resource: str
    verb: str
    why: str


_FT = "finetune.dev"
_RAY = "ray.io"

# Operations of the operator's own API layer (kube.py), keyed by the name each
# function declares.
API_OPERATIONS: dict[str, Permission] = {
    "finetunejobs.get": Permission(_FT, "finetunejobs", "get", "re-read a job before reconciling it"),
    "finetunejobs.patch": Permission(_FT, "finetunejobs", "patch", "add and remove the output-cleanup finalizer"),
    "finetunejobs/status.patch": Permission(_FT, "finetunejobs/status", "patch", "write the job's status"),
    "rayjobs.get": Permission(_RAY, "rayjobs", "get", "read the RayJob's status"),
    "rayjobs.create": Permission(_RAY, "rayjobs", "create", "start the job's Ray cluster and trainer"),
    "rayjobs.patch": Permission(_RAY, "rayjobs", "patch", "suspend and resume the RayJob"),
    "rayjobs.delete": Permission(_RAY, "rayjobs", "delete", "remove a finished RayJob after its TTL"),
    "configmaps.get": Permission("", "configmaps", "get", "read the job's trainer configuration"),
    "configmaps.create": Permission("", "configmaps", "create", "hand the trainer its JobConfig"),
    "secrets.get": Permission("", "secrets", "get", "check that spec.output.secretRef exists"),
    "pods.list": Permission("", "pods", "list", "find the RayJob's submitter pod"),
    "pods/log.get": Permission("", "pods/log", "get", "read progress lines from the submitter's log"),
    "jobs.create": Permission("batch", "jobs", "create", "delete artifacts of outputPolicy Delete"),
    "jobs.get": Permission("batch", "jobs", "get", "wait for the artifact-cleanup Job"),
}

# What kopf itself does under the hood, with the settings runtime.py applies.
KOPF_OPERATIONS: tuple[Permission, ...] = (
    *(Permission(_FT, "finetunejobs", verb, "kopf watches jobs and stores handler progress in annotations")
      for verb in ("list", "watch", "patch")),
    *(Permission(_RAY, "rayjobs", verb, "kopf watches the RayJobs we own to wake their FineTuneJob")
      for verb in ("list", "watch")),
    Permission("", "events", "create", "kopf posts the Events we emit"),
    *(Permission("kopf.dev", resource, verb, "kopf peering: one active operator at a time")
      for resource in ("clusterkopfpeerings", "kopfpeerings")
      for verb in ("get", "list", "watch", "patch")),
    *(Permission("", "namespaces", verb, "kopf discovers namespaces matching --namespace patterns")
      for verb in ("list", "watch")),
    *(Permission("apiextensions.k8s.io", "customresourcedefinitions", verb,
                 "kopf scans which CRDs are served")
      for verb in ("get", "list", "watch")),
)

_F = TypeVar("_F", bound=Callable[..., object])


def needs(operation: str) -> Callable[[_F], _F]:
    """Declare which permission an API function uses (checked at import time)."""
    if operation not in API_OPERATIONS:
        raise KeyError(f"{operation!r} is not in permissions.API_OPERATIONS")

    def mark(fn: _F) -> _F:
        fn.__finetune_permission__ = operation  # type: ignore[attr-defined]
        return fn

    return mark


def rules(permissions: list[Permission] | tuple[Permission, ...]) -> list[dict[str, list[str]]]:
    """Merge permissions into RBAC PolicyRules: one rule per (apiGroup, resource)."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for permission in permissions:
        verbs.setdefault((permission.api_group, permission.resource), set()).add(permission.verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs[(group, resource)])}
        for group, resource in sorted(verbs)
    ]


ALL_PERMISSIONS: tuple[Permission, ...] = (*API_OPERATIONS.values(), *KOPF_OPERATIONS)

# The RBAC rules of the operator's ClusterRole (or Role, per watched namespace).
REQUIRED_PERMISSIONS: list[dict[str, list[str]]] = rules(ALL_PERMISSIONS)
