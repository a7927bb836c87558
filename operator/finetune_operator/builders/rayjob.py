"""The KubeRay RayJob a FineTuneJob runs as, and the patch for its mutable fields."""

from __future__ import annotations

from typing import Any, Optional

from finetune_operator import naming
from finetune_operator.api import FineTuneJobSpec
from finetune_operator.builders.configmap import CONFIG_PATH, config_hash
from finetune_operator.builders.metadata import child_metadata, job_identity
from finetune_operator.builders.pods import (
    HEAD_CONTAINER, WORKER_CONTAINER, object_store, pod_template, submitter_template,
)
from finetune_operator.cluster_defaults import deletion_strategy, is_gpu_job
from finetune_operator.settings import Settings

RAYJOB_API_VERSION = "ray.io/v1"
RAYJOB_KIND = "RayJob"
ENTRYPOINT = f"python -m finetune_trainer --config {CONFIG_PATH}"
WORKER_GROUP = "workers"


def rayjob_suspended(spec: FineTuneJobSpec) -> bool:
    """Whether the RayJob is created suspended: the user asked for it, or Kueue
    decides when it starts (Kueue unsuspends it on admission)."""
    return spec.scheduling.suspend or bool(spec.scheduling.queue_name)


def build_rayjob(job_obj: dict, spec: FineTuneJobSpec, settings: Settings) -> dict:
    """The ray.io/v1 RayJob that runs the job: one head, one worker group of
    `resources.workers` pods, the trainer as entrypoint."""
    name, namespace, uid = job_identity(job_obj)
    resources = spec.resources
    scheduling = spec.scheduling
    metadata = child_metadata(job_obj, naming.rayjob_name(name), naming.COMPONENT_RAYJOB)
    metadata["annotations"] = {naming.RUN_NAME_ANNOTATION: naming.run_name(namespace, name)}
    if scheduling.queue_name:
        metadata["labels"][naming.KUEUE_QUEUE_LABEL] = scheduling.queue_name

    digest = config_hash(job_obj, spec)
    head = pod_template(
        job_obj, spec, settings, container=HEAD_CONTAINER, cpu=resources.head.cpu,
        memory=resources.head.memory, gpu=0,
        disk=resources.head.ephemeral_storage or settings.rayjob.head_ephemeral_storage,
        with_config=True, placement=False, digest=digest,
    )
    worker = pod_template(
        job_obj, spec, settings, container=WORKER_CONTAINER, cpu=resources.worker.cpu,
        memory=resources.worker.memory, gpu=resources.worker.gpu,
        disk=resources.worker.ephemeral_storage or settings.rayjob.worker_ephemeral_storage,
        with_config=False, placement=True, digest=digest,
    )
    mutables = build_rayjob_desired_mutables(spec, settings)
    rayjob_spec: dict[str, Any] = {
        "entrypoint": ENTRYPOINT,
        "submissionMode": "K8sJobMode",
        "backoffLimit": scheduling.backoff_limit,
        "suspend": rayjob_suspended(spec),
        "submitterPodTemplate": submitter_template(job_obj, spec, settings),
        "metadata": {naming.SUBMISSION_RUN_NAME_KEY: naming.run_name(namespace, name),
                     naming.SUBMISSION_JOB_UID_KEY: uid},
        "rayClusterSpec": {
            "rayVersion": settings.rayjob.ray_version,
            "enableInTreeAutoscaling": False,
            "headGroupSpec": {
                # No CPUs on the head: training tasks and Tune trial drivers land on
                # the workers, never on the small head pod (the driver, Train's
                # controller and the progress queue need none).
                "rayStartParams": {
                    "dashboard-host": "0.0.0.0", "num-cpus": "0",
                    "object-store-memory": object_store(resources.head.memory, spec, settings),
                },
                "template": head,
            },
            "workerGroupSpecs": [{
                "groupName": WORKER_GROUP,
                "replicas": resources.workers,
                "minReplicas": resources.workers,
                "maxReplicas": resources.workers,
                "rayStartParams": {"object-store-memory": object_store(resources.worker.memory, spec, settings)},
                "template": worker,
            }],
        },
    }
    rayjob_spec.update({k: v for k, v in mutables.items() if k != "suspend" and v is not None})
    if not settings.rayjob.deletion_rules:
        rayjob_spec["shutdownAfterJobFinishes"] = True
    pre_running = settings.rayjob.pre_running_deadline_seconds
    if is_gpu_job(spec) and pre_running is None:
        pre_running = settings.rayjob.gpu_pre_running_deadline_seconds
    if pre_running is not None:
        rayjob_spec["preRunningDeadlineSeconds"] = pre_running
    return {
        "apiVersion": RAYJOB_API_VERSION,
        "kind": RAYJOB_KIND,
        "metadata": metadata,
        "spec": rayjob_spec,
    }


def build_rayjob_patch(rayjob: dict, spec: FineTuneJobSpec, settings: Settings) -> Optional[dict]:
    """The merge patch that brings a live RayJob's mutable fields (suspend, TTL,
    deadline: api.MUTABLE_SPEC_PATHS) in line with the FineTuneJob, or None when they
    already are.

    Kueue owns `suspend` of a queued job: a user's suspend is passed on, but only
    Kueue lifts it. A finished RayJob is left alone."""
    current = rayjob.get("spec") or {}
    state = (rayjob.get("status") or {}).get("jobDeploymentStatus")
    if state in ("Complete", "Failed", "ValidationFailed"):
        return None
    desired = build_rayjob_desired_mutables(spec, settings)
    if current.get("shutdownAfterJobFinishes") and "deletionStrategy" in desired:
        # Created before deletion rules were on: KubeRay refuses both at once, so the
        # TTL stays where that RayJob keeps it.
        rules = desired.pop("deletionStrategy")["deletionRules"]
        desired["ttlSecondsAfterFinished"] = max(rule["condition"]["ttlSeconds"] for rule in rules)
    if spec.scheduling.queue_name and not spec.scheduling.suspend:
        desired.pop("suspend")
    changes = {key: value for key, value in desired.items() if current.get(key) != value}
    return {"spec": changes} if changes else None


def build_rayjob_desired_mutables(spec: FineTuneJobSpec, settings: Settings) -> dict[str, Any]:
    """The values of the RayJob fields a live FineTuneJob may still change (None
    deletes the field in a merge patch). The TTL lives in the deletion rules, or in
    ttlSecondsAfterFinished when the older shutdownAfterJobFinishes is used."""
    scheduling = spec.scheduling
    ttl = (scheduling.ttl_seconds_after_finished if scheduling.ttl_seconds_after_finished is not None
           else settings.rayjob.ttl_seconds_after_finished)
    deadline = scheduling.active_deadline_seconds
    if deadline is None and is_gpu_job(spec):
        deadline = settings.rayjob.gpu_active_deadline_seconds
    out: dict[str, Any] = {"suspend": scheduling.suspend}
    if settings.rayjob.deletion_rules:
        out["deletionStrategy"] = deletion_strategy(ttl)
    else:
        out["ttlSecondsAfterFinished"] = ttl
    out["activeDeadlineSeconds"] = deadline
    return out
