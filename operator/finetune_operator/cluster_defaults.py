"""What the operator decides for every job's Ray cluster beyond its spec: how large
Ray's object store is, which image submits the job, when finished pods are deleted.

Pure functions of the spec and the settings, used by the builders.
"""

from __future__ import annotations

from typing import Any, Optional

from finetune_operator.api import FineTuneJobSpec, parse_quantity
from finetune_operator.settings import Settings

# Ray refuses an object store below 75 MiB (ray_constants.OBJECT_STORE_MINIMUM_MEMORY_BYTES).
RAY_MIN_OBJECT_STORE_BYTES = 75 * 2**20
SUBMITTER_IMAGE = "rayproject/ray:{ray_version}-py311-cpu"


def object_store_bytes(shm: str, settings: Settings) -> int:
    """Ray's object store size for a pod whose /dev/shm is `shm`: a share of it, so
    the store lives in shared memory (Ray falls back to slow disk when it does not
    fit) and NCCL and data loaders keep the rest."""
    share = settings.rayjob.object_store_share_of_shm
    return max(RAY_MIN_OBJECT_STORE_BYTES, int(parse_quantity(shm) * share))


def is_gpu_job(spec: FineTuneJobSpec) -> bool:
    return spec.resources.worker.gpu > 0


def submitter_image(settings: Settings) -> str:
    """A small image with the Ray CLI: the submitter only runs `ray job submit`."""
    return settings.rayjob.submitter_image or SUBMITTER_IMAGE.format(ray_version=settings.rayjob.ray_version)


def deletion_strategy(ttl: int) -> dict[str, Any]:
    """KubeRay's deletion rules for a finished job: the workers (the GPUs) at once,
    the rest of the Ray cluster after `ttl` seconds (the head's logs stay readable
    until then). The RayJob itself is left to the FineTuneJob's ownerReference."""
    rules = []
    for condition in ({"jobStatus": "SUCCEEDED"}, {"jobStatus": "FAILED"}, {"jobDeploymentStatus": "Failed"}):
        if ttl > 0:
            rules.append({"condition": {**condition, "ttlSeconds": 0}, "policy": "DeleteWorkers"})
        rules.append({"condition": {**condition, "ttlSeconds": ttl}, "policy": "DeleteCluster"})
    return {"deletionRules": rules}


def rayjob_ttl(rayjob_spec: dict[str, Any]) -> Optional[int]:
    """How long a finished RayJob's Ray cluster stays up: the longest of its deletion
    rules' ttlSeconds, else the older ttlSecondsAfterFinished (None: neither set)."""
    rules = (rayjob_spec.get("deletionStrategy") or {}).get("deletionRules") or []
    ttls = [rule["condition"]["ttlSeconds"] for rule in rules if "ttlSeconds" in (rule.get("condition") or {})]
    return max(ttls) if ttls else rayjob_spec.get("ttlSecondsAfterFinished")
