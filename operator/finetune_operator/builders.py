"""Desired state: the ConfigMap and the KubeRay RayJob a FineTuneJob turns into.

Pure functions: a FineTuneJob object (as the API server returns it), its validated
spec and the operator settings in; plain dicts out, ready to POST. No client, no I/O,
so every field can be checked by table tests against KubeRay's real CRD schema.

The training configuration reaches the trainer only through the ConfigMap (mounted
on the head pod, where KubeRay's submitter starts the driver), never through the
entrypoint string, so no user text is ever parsed by a shell.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Optional

from finetune_operator import naming
from finetune_operator.api import API_VERSION, KIND, FineTuneJobSpec, parse_quantity
from finetune_operator.cluster_defaults import deletion_strategy, is_gpu_job, object_store_bytes, submitter_image
from finetune_operator.settings import Settings

RAYJOB_API_VERSION = "ray.io/v1"
RAYJOB_KIND = "RayJob"

CONFIG_DIR = "/etc/finetune"
CONFIG_FILE = "job.json"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"
ENTRYPOINT = f"python -m finetune_trainer --config {CONFIG_PATH}"

HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER = "ray-worker"
SUBMITTER_CONTAINER = "ray-job-submitter"
WORKER_GROUP = "workers"
GPU_RESOURCE = "nvidia.com/gpu"
EPHEMERAL_STORAGE = "ephemeral-storage"
SHM_VOLUME = "dshm"
CONFIG_VOLUME = "finetune-config"


def _metadata(job_obj: dict) -> tuple[str, str, str]:
    meta = job_obj.get("metadata") or {}
    try:
        return meta["name"], meta["namespace"], meta["uid"]
    except KeyError as err:
        raise ValueError(
            f"FineTuneJob object has no metadata.{err.args[0]}; builders need a stored object"
        ) from None


def owner_reference(job_obj: dict) -> dict:
    """The reference that makes Kubernetes garbage-collect a child with its job."""
    name, _, uid = _metadata(job_obj)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _child_metadata(job_obj: dict, name: str, component: str) -> dict:
    job_name, namespace, uid = _metadata(job_obj)
    return {
        "name": name,
        "namespace": namespace,
        "labels": naming.owned_labels(job_name, uid, component),
        "ownerReferences": [owner_reference(job_obj)],
    }


# --------------------------------------------------------------------------- ConfigMap


def job_config_json(job_obj: dict, spec: FineTuneJobSpec) -> str:
    """The trainer's input for this job, as the exact JSON the ConfigMap holds."""
    name, namespace, _ = _metadata(job_obj)
    config = spec.job_config(naming.run_name(namespace, name))
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def config_hash(job_obj: dict, spec: FineTuneJobSpec) -> str:
    return hashlib.sha256(job_config_json(job_obj, spec).encode()).hexdigest()[:16]


def build_configmap(job_obj: dict, spec: FineTuneJobSpec, settings: Settings) -> dict:
    """The ConfigMap holding the JobConfig JSON the trainer reads at CONFIG_PATH."""
    name, namespace, _ = _metadata(job_obj)
    metadata = _child_metadata(job_obj, naming.configmap_name(name), naming.COMPONENT_CONFIG)
    metadata["annotations"] = {naming.RUN_NAME_ANNOTATION: naming.run_name(namespace, name)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        # Immutable: a spec never changes under a live job (admission refuses it), and
        # the kubelet stops watching immutable ConfigMaps, which saves API load.
        "immutable": True,
        "data": {CONFIG_FILE: job_config_json(job_obj, spec)},
    }


# ------------------------------------------------------------------------------- pods


def _mebibytes(quantity_bytes: float) -> str:
    return f"{max(1, math.ceil(quantity_bytes / 2**20))}Mi"


def shm_size(memory: str, shared_memory: Optional[str], settings: Settings) -> str:
    """/dev/shm size: the job's own choice, else a share of the pod's memory."""
    if shared_memory:
        return shared_memory
    return _mebibytes(parse_quantity(memory) * settings.rayjob.shm_ratio)


def _env(spec: FineTuneJobSpec, settings: Settings, job_obj: dict) -> list[dict]:
    name, namespace, _ = _metadata(job_obj)
    env = [
        {"name": "FINETUNE_RUN_NAME", "value": naming.run_name(namespace, name)},
        # No model or dataset hub at run time: models come from the image or S3.
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
    ]
    endpoint = spec.output.endpoint or settings.default_s3_endpoint
    region = spec.output.region or settings.default_s3_region
    if endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": endpoint})
    if region:
        env.append({"name": "AWS_REGION", "value": region})
        env.append({"name": "AWS_DEFAULT_REGION", "value": region})
    return env


def _env_from(spec: FineTuneJobSpec) -> list[dict]:
    # A secretRef is only a name: the kubelet resolves it in the pod's own namespace,
    # which is the FineTuneJob's, so no job can read another tenant's Secret.
    if spec.output.secretRef is None:
        return []
    return [{"secretRef": {"name": spec.output.secretRef.name}}]


def _container_security(settings: Settings) -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.rayjob.run_as_user,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security(settings: Settings) -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.rayjob.run_as_user,
        "fsGroup": settings.rayjob.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(cpu: str, memory: str, gpu: int = 0, disk: Optional[str] = None) -> dict:
    amounts: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpu:
        amounts[GPU_RESOURCE] = gpu
    # Requests equal limits: Guaranteed QoS, and Ray sees exactly what it gets.
    out = {"requests": dict(amounts), "limits": dict(amounts)}
    if disk:
        # Only requested: the scheduler picks a node with room for checkpoints, and a
        # large export is not evicted for passing a limit.
        out["requests"][EPHEMERAL_STORAGE] = disk
    return out


def _pod_template(
    job_obj: dict,
    spec: FineTuneJobSpec,
    settings: Settings,
    *,
    container: str,
    cpu: str,
    memory: str,
    gpu: int,
    disk: Optional[str],
    with_config: bool,
    placement: bool,
    digest: str,
) -> dict:
    name, _, uid = _metadata(job_obj)
    volumes: list[dict] = [
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": _shm(memory, spec, settings)}},
    ]
    mounts: list[dict] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    if with_config:
        volumes.append({"name": CONFIG_VOLUME, "configMap": {"name": naming.configmap_name(name)}})
        mounts.append({"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True})
    main: dict[str, Any] = {
        "name": container,
        "image": spec.resources.image or settings.default_image,
        "imagePullPolicy": settings.rayjob.image_pull_policy,
        "resources": _resources(cpu, memory, gpu, disk),
        "env": _env(spec, settings, job_obj) + _driver_env(settings, with_config),
        "volumeMounts": mounts,
        "securityContext": _container_security(settings),
    }
    env_from = _env_from(spec)
    if env_from:
        main["envFrom"] = env_from
    pod: dict[str, Any] = {
        "containers": [main],
        "volumes": volumes,
        "securityContext": _pod_security(settings),
    }
    if settings.rayjob.service_account:
        pod["serviceAccountName"] = settings.rayjob.service_account
    if spec.scheduling.priorityClassName:
        pod["priorityClassName"] = spec.scheduling.priorityClassName
    if placement:
        selector = dict(spec.resources.nodeSelector)
        if spec.resources.acceleratorType and settings.rayjob.accelerator_node_label:
            selector[settings.rayjob.accelerator_node_label] = spec.resources.acceleratorType
        if selector:
            pod["nodeSelector"] = selector
        tolerations = [t.model_dump(exclude_none=True) for t in spec.resources.tolerations]
        if gpu and settings.rayjob.gpu_toleration:
            gpu_taint = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
            if gpu_taint not in tolerations:
                tolerations.append(gpu_taint)
        if tolerations:
            pod["tolerations"] = tolerations
    component = naming.COMPONENT_RAYJOB
    return {
        "metadata": {
            "labels": naming.owned_labels(name, uid, component),
            "annotations": {naming.CONFIG_HASH_ANNOTATION: digest},
        },
        "spec": pod,
    }


def _shm(memory: str, spec: FineTuneJobSpec, settings: Settings) -> str:
    return shm_size(memory, spec.resources.sharedMemory, settings)


def _object_store(memory: str, spec: FineTuneJobSpec, settings: Settings) -> str:
    """rayStartParams' object-store-memory (bytes, as text) for a pod of `memory`."""
    return str(object_store_bytes(_shm(memory, spec, settings), settings))


def _driver_env(settings: Settings, driver: bool) -> list[dict]:
    """The head pod runs the driver, the one process that may fetch a hub model (it
    stages it in the job's storage for the workers)."""
    if driver and settings.rayjob.allow_model_downloads:
        return [{"name": "FINETUNE_ALLOW_DOWNLOADS", "value": "1"}]
    return []


def _submitter_template(job_obj: dict, spec: FineTuneJobSpec, settings: Settings) -> dict:
    """The pod running `ray job submit`; its log carries the driver's progress lines."""
    name, _, uid = _metadata(job_obj)
    cpu, memory = settings.rayjob.submitter_cpu, settings.rayjob.submitter_memory
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{
            "name": SUBMITTER_CONTAINER,
            "image": submitter_image(settings),
            "imagePullPolicy": settings.rayjob.image_pull_policy,
            "resources": _resources(cpu, memory),
            "securityContext": _container_security(settings),
        }],
        "securityContext": _pod_security(settings),
    }
    if settings.rayjob.service_account:
        pod["serviceAccountName"] = settings.rayjob.service_account
    return {"metadata": {"labels": naming.owned_labels(name, uid, naming.COMPONENT_RAYJOB)}, "spec": pod}


# ----------------------------------------------------------------------------- RayJob


def rayjob_suspended(spec: FineTuneJobSpec) -> bool:
    """Whether the RayJob is created suspended: the user asked for it, or Kueue
    decides when it starts (Kueue unsuspends it on admission)."""
    return spec.scheduling.suspend or bool(spec.scheduling.queueName)


def build_rayjob(job_obj: dict, spec: FineTuneJobSpec, settings: Settings) -> dict:
    """The ray.io/v1 RayJob that runs the job: one head, one worker group of
    `resources.workers` pods, the trainer as entrypoint."""
    name, namespace, uid = _metadata(job_obj)
    resources = spec.resources
    scheduling = spec.scheduling
    metadata = _child_metadata(job_obj, naming.rayjob_name(name), naming.COMPONENT_RAYJOB)
    metadata["annotations"] = {naming.RUN_NAME_ANNOTATION: naming.run_name(namespace, name)}
    if scheduling.queueName:
        metadata["labels"][naming.KUEUE_QUEUE_LABEL] = scheduling.queueName

    digest = config_hash(job_obj, spec)
    head = _pod_template(
        job_obj, spec, settings, container=HEAD_CONTAINER, cpu=resources.head.cpu,
        memory=resources.head.memory, gpu=0,
        disk=resources.head.ephemeralStorage or settings.rayjob.head_ephemeral_storage,
        with_config=True, placement=False, digest=digest,
    )
    worker = _pod_template(
        job_obj, spec, settings, container=WORKER_CONTAINER, cpu=resources.worker.cpu,
        memory=resources.worker.memory, gpu=resources.worker.gpu,
        disk=resources.worker.ephemeralStorage or settings.rayjob.worker_ephemeral_storage,
        with_config=False, placement=True, digest=digest,
    )
    mutables = build_rayjob_desired_mutables(spec, settings)
    rayjob_spec: dict[str, Any] = {
        "entrypoint": ENTRYPOINT,
        "submissionMode": "K8sJobMode",
        "backoffLimit": scheduling.backoffLimit,
        "suspend": rayjob_suspended(spec),
        "submitterPodTemplate": _submitter_template(job_obj, spec, settings),
        "metadata": {"finetune.dev/run-name": naming.run_name(namespace, name), "finetune.dev/job-uid": uid},
        "rayClusterSpec": {
            "rayVersion": settings.rayjob.ray_version,
            "enableInTreeAutoscaling": False,
            "headGroupSpec": {
                # No CPUs on the head: training tasks and Tune trial drivers land on
                # the workers, never on the small head pod (the driver, Train's
                # controller and the progress queue need none).
                "rayStartParams": {
                    "dashboard-host": "0.0.0.0", "num-cpus": "0",
                    "object-store-memory": _object_store(resources.head.memory, spec, settings),
                },
                "template": head,
            },
            "workerGroupSpecs": [{
                "groupName": WORKER_GROUP,
                "replicas": resources.workers,
                "minReplicas": resources.workers,
                "maxReplicas": resources.workers,
                "rayStartParams": {"object-store-memory": _object_store(resources.worker.memory, spec, settings)},
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
    if spec.scheduling.queueName and not spec.scheduling.suspend:
        desired.pop("suspend")
    changes = {key: value for key, value in desired.items() if current.get(key) != value}
    return {"spec": changes} if changes else None


def build_rayjob_desired_mutables(spec: FineTuneJobSpec, settings: Settings) -> dict[str, Any]:
    """The values of the RayJob fields a live FineTuneJob may still change (None
    deletes the field in a merge patch). The TTL lives in the deletion rules, or in
    ttlSecondsAfterFinished when the older shutdownAfterJobFinishes is used."""
    scheduling = spec.scheduling
    ttl = (scheduling.ttlSecondsAfterFinished if scheduling.ttlSecondsAfterFinished is not None
           else settings.rayjob.ttl_seconds_after_finished)
    deadline = scheduling.activeDeadlineSeconds
    if deadline is None and is_gpu_job(spec):
        deadline = settings.rayjob.gpu_active_deadline_seconds
    out: dict[str, Any] = {"suspend": scheduling.suspend}
    if settings.rayjob.deletion_rules:
        out["deletionStrategy"] = deletion_strategy(ttl)
    else:
        out["ttlSecondsAfterFinished"] = ttl
    out["activeDeadlineSeconds"] = deadline
    return out
