"""Every label, annotation key and child-object name the operator uses.

Kept in one module so the builders, the reconcile loop, the RBAC rules and the tests
cannot drift apart on a spelling. Child names are pure functions of the FineTuneJob's
name: deterministic (a retry or an operator restart finds the same objects), valid
Kubernetes names, and short enough for what KubeRay derives from them.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from finetune_operator.api import GROUP

# ----------------------------------------------------------------------------- labels

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "finetune-operator"
PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF_VALUE = "finetune"
COMPONENT_LABEL = "app.kubernetes.io/component"

# Which FineTuneJob a child belongs to. The name label may be truncated (label values
# are at most 63 characters); the uid label is exact and is what selectors should use.
JOB_NAME_LABEL = f"{GROUP}/job-name"
JOB_UID_LABEL = f"{GROUP}/job-uid"

# KubeRay runs the submitter (K8sJobMode) as a batch Job named after the RayJob; the
# Job controller labels its pods with this, and with the older `job-name` before
# Kubernetes 1.27 (the CLI looks for both; the operator needs a cluster it supports).
SUBMITTER_POD_LABEL = "batch.kubernetes.io/job-name"
LEGACY_SUBMITTER_POD_LABEL = "job-name"
SUBMITTER_POD_LABELS = (SUBMITTER_POD_LABEL, LEGACY_SUBMITTER_POD_LABEL)

# Kueue reads these on the workload's owner (the RayJob): the LocalQueue to submit to,
# and a WorkloadPriorityClass name. The builders set only the queue: spec.scheduling.
# priorityClassName names a Kubernetes PriorityClass, which goes on the pods, and
# Kueue takes a workload's priority from the pods' priorityClassName when the
# priority-class label is absent.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"

# A user may set this label on a FineTuneJob to order it in the operator's own queue
# when no priorityClassName is given (an integer; higher runs first).
PRIORITY_LABEL = f"{GROUP}/priority"

# ------------------------------------------------------------------------ annotations

# Hash of the JobConfig JSON in the ConfigMap, stamped on the RayJob's pods so a
# changed config is visible on the pods it reached.
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
# The run name (storage folder) of the job, for people reading the RayJob.
RUN_NAME_ANNOTATION = f"{GROUP}/run-name"

# The spec a RayJob was built from (compact JSON), stamped on the RayJob itself: the
# reference for refusing later changes, which survives operator restarts and needs no
# extra object.
ACCEPTED_SPEC_ANNOTATION = f"{GROUP}/accepted-spec"

# Ray job-submission metadata (RayJob spec.metadata), shown by `ray job list` and the
# Ray dashboard, so a Ray job leads back to its run and its FineTuneJob.
SUBMISSION_RUN_NAME_KEY = f"{GROUP}/run-name"
SUBMISSION_JOB_UID_KEY = f"{GROUP}/job-uid"

# Finalizer that lets the operator clean storage when outputPolicy is Delete.
FINALIZER = f"{GROUP}/cleanup"

# ------------------------------------------------------------------------------ names

# Components (values of COMPONENT_LABEL).
COMPONENT_RAYJOB = "rayjob"
COMPONENT_CONFIG = "config"
COMPONENT_CLEANUP = "cleanup"

# KubeRay derives the RayCluster name as `<rayjob>-<5 random chars>` and rejects RayJob
# names longer than 47 characters or that are not DNS-1035 labels (ValidateRayJobMetadata).
MAX_RAYJOB_NAME = 47
MAX_CLEANUP_JOB_NAME = 48
MAX_LABEL_NAME = 63
MAX_RUN_NAME = 253
_HASH_CHARS = 8

_RUN_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def short_hash(text: str, length: int = _HASH_CHARS) -> str:
    """A stable lowercase hex digest, used to keep truncated names unique."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _bounded(candidate: str, original: str, limit: int, *, must_start_with_letter: bool) -> str:
    """`candidate` if it is already a clean name within `limit`, else a truncated form
    plus a hash of `original`, so two long or rewritten names never collide."""
    clean = re.sub(r"[^-a-z0-9]", "-", candidate.lower())
    if must_start_with_letter and not clean[:1].isalpha():
        clean = "j-" + clean
    if clean == candidate and len(clean) <= limit:
        return clean
    digest = short_hash(original)
    head = clean[: limit - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def rayjob_name(job_name: str) -> str:
    """The RayJob's name: the job's own name when KubeRay accepts it, else a
    DNS-1035 form of at most 47 characters ending in a hash of the job name."""
    return _bounded(job_name, job_name, MAX_RAYJOB_NAME, must_start_with_letter=True)


def configmap_name(job_name: str) -> str:
    """The ConfigMap holding the job's JobConfig: `<name>-config`, at most 63
    characters (DNS-1123 label)."""
    return _bounded(f"{job_name}-config", job_name, MAX_LABEL_NAME, must_start_with_letter=False)


def cleanup_job_name(job_name: str) -> str:
    """The output-cleanup Job: `<rayjob name>-cleanup`, at most 48 characters, so the
    pods the Job controller names after it stay valid too. A RayJob name too long for
    that is cut and ends in a hash of the job name, so two jobs never share a cleanup
    Job."""
    suffix = "-cleanup"
    head = _bounded(rayjob_name(job_name), job_name, MAX_CLEANUP_JOB_NAME - len(suffix), must_start_with_letter=True)
    return head + suffix


def run_name(namespace: str, name: str) -> str:
    """The run's storage name, `<namespace>-<name>`.

    It is the same on every attempt and across operator restarts, so a retried or
    resumed job finds its checkpoints; the namespace keeps two tenants' jobs of the
    same name apart in a shared bucket."""
    full = f"{namespace}-{name}"
    if len(full) <= MAX_RUN_NAME and _RUN_NAME.match(full):
        return full
    digest = short_hash(full)
    return f"{full[: MAX_RUN_NAME - len(digest) - 1].rstrip('-.')}-{digest}"


def label_value(text: str) -> str:
    """`text` as a valid label value (at most 63 characters, alphanumeric at both
    ends); long values end in a hash so they stay distinct."""
    clean = re.sub(r"[^-_.a-zA-Z0-9]", "-", text).strip("-_.")
    if clean == text and len(clean) <= MAX_LABEL_NAME:
        return clean
    digest = short_hash(text)
    head = clean[: MAX_LABEL_NAME - len(digest) - 1].rstrip("-_.")
    return f"{head}-{digest}" if head else digest


def owned_labels(job_name: str, job_uid: str, component: str) -> dict[str, str]:
    """The labels on every object the operator creates for a FineTuneJob."""
    return {
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        PART_OF_LABEL: PART_OF_VALUE,
        COMPONENT_LABEL: component,
        JOB_NAME_LABEL: label_value(job_name),
        JOB_UID_LABEL: job_uid,
    }


MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
"""A label selector for every object the operator manages."""


def accepted_spec(rayjob: dict) -> Any:
    """The FineTuneJob spec stamped on a RayJob when it was built
    (ACCEPTED_SPEC_ANNOTATION, parsed JSON), or None when there is none or it is not JSON."""
    accepted = ((rayjob.get("metadata") or {}).get("annotations") or {}).get(ACCEPTED_SPEC_ANNOTATION)
    if not accepted:
        return None
    try:
        return json.loads(accepted)
    except ValueError:
        return None
