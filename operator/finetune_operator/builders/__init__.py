"""Desired state: the objects a FineTuneJob turns into.

Pure functions: a FineTuneJob object (as the API server returns it), its validated
spec and the operator settings in; plain dicts out, ready to POST. No client, no I/O,
so every field can be checked by table tests against the real CRD schemas.

One module per object: `configmap` (the trainer's JobConfig), `pods` (head, worker
and submitter templates), `rayjob` (the RayJob and the patch of its mutable fields),
`cleanup` (the Job that deletes a job's outputs); `metadata` holds what every child
carries. This package's namespace is the surface the rest of the operator uses.
"""

from finetune_operator.builders.cleanup import CLEANUP_SCRIPT, build_cleanup_job
from finetune_operator.builders.configmap import (
    CONFIG_DIR, CONFIG_FILE, CONFIG_PATH, CONFIG_VOLUME, build_configmap, config_hash, job_config_json,
)
from finetune_operator.builders.metadata import owner_reference
from finetune_operator.builders.pods import (
    EPHEMERAL_STORAGE, GPU_RESOURCE, HEAD_CONTAINER, SHM_VOLUME, SUBMITTER_CONTAINER, WORKER_CONTAINER,
    shm_size,
)
from finetune_operator.builders.rayjob import (
    ENTRYPOINT, RAYJOB_API_VERSION, RAYJOB_KIND, WORKER_GROUP, build_rayjob, build_rayjob_desired_mutables,
    build_rayjob_patch, rayjob_suspended,
)
from finetune_operator.cluster_defaults import deletion_strategy

__all__ = [
    "CLEANUP_SCRIPT", "CONFIG_DIR", "CONFIG_FILE", "CONFIG_PATH", "CONFIG_VOLUME", "ENTRYPOINT",
    "EPHEMERAL_STORAGE", "GPU_RESOURCE", "HEAD_CONTAINER", "RAYJOB_API_VERSION", "RAYJOB_KIND",
    "SHM_VOLUME", "SUBMITTER_CONTAINER", "WORKER_CONTAINER", "WORKER_GROUP", "build_cleanup_job",
    "build_configmap", "build_rayjob", "build_rayjob_desired_mutables", "build_rayjob_patch", "config_hash",
    "deletion_strategy", "job_config_json", "owner_reference", "rayjob_suspended", "shm_size",
]
