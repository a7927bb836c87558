"""The pod templates of a job's RayJob: head, workers and KubeRay's submitter.

Requests equal limits, a memory-backed /dev/shm, the restricted security profile, and
the job's S3 Secret as environment (a Secret name, resolved in the job's namespace).
"""

from __future__ import annotations

import math
from typing import Any, Optional

from finetune_operator import naming
from finetune_operator.api import FineTuneJobSpec, parse_quantity
from finetune_operator.builders.configmap import CONFIG_DIR, CONFIG_VOLUME
from finetune_operator.builders.metadata import job_identity
from finetune_operator.cluster_defaults import object_store_bytes, submitter_image
from finetune_operator.settings import Settings

HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER = "ray-worker"
SUBMITTER_CONTAINER = "ray-job-submitter"
GPU_RESOURCE = "nvidia.com/gpu"
EPHEMERAL_STORAGE = "ephemeral-storage"
SHM_VOLUME = "dshm"


def _mebibytes(quantity_bytes: float) -> str:
    return f"{max(1, math.ceil(quantity_bytes / 2**20))}Mi"


def shm_size(memory: str, shared_memory: Optional[str], settings: Settings) -> str:
    """/dev/shm size: the job's own choice, else a share of the pod's memory."""
    if shared_memory:
        return shared_memory
    return _mebibytes(parse_quantity(memory) * settings.rayjob.shm_ratio)


def _env(spec: FineTuneJobSpec, settings: Settings, job_obj: dict) -> list[dict]:
    name, namespace, _ = job_identity(job_obj)
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
    if spec.output.secret_ref is None:
        return []
    return [{"secretRef": {"name": spec.output.secret_ref.name}}]


def container_security(settings: Settings, *, read_only_root: bool = False) -> dict:
    """Every container the operator creates: not root, no privilege escalation, no
    capabilities, the runtime's seccomp profile. The root filesystem is read-only
    where the program allows it (the cleanup Job); Ray's head and workers write their
    session files, spilled objects and model caches under the root (/tmp/ray, $HOME),
    and the submitter runs the Ray CLI, so theirs stays writable."""
    context = {
        "runAsNonRoot": True,
        "runAsUser": settings.rayjob.run_as_user,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if read_only_root:
        context["readOnlyRootFilesystem"] = True
    return context


def pod_security(settings: Settings) -> dict:
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


def pod_template(
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
    name, _, uid = job_identity(job_obj)
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
        "securityContext": container_security(settings),
    }
    env_from = _env_from(spec)
    if env_from:
        main["envFrom"] = env_from
    pod: dict[str, Any] = {
        "containers": [main],
        "volumes": volumes,
        "securityContext": pod_security(settings),
    }
    if settings.rayjob.service_account:
        pod["serviceAccountName"] = settings.rayjob.service_account
    if spec.scheduling.priority_class_name:
        pod["priorityClassName"] = spec.scheduling.priority_class_name
    if placement:
        selector = dict(spec.resources.node_selector)
        if spec.resources.accelerator_type and settings.rayjob.accelerator_node_label:
            selector[settings.rayjob.accelerator_node_label] = spec.resources.accelerator_type
        if selector:
            pod["nodeSelector"] = selector
        tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.resources.tolerations]
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
    return shm_size(memory, spec.resources.shared_memory, settings)


def object_store(memory: str, spec: FineTuneJobSpec, settings: Settings) -> str:
    """rayStartParams' object-store-memory (bytes, as text) for a pod of `memory`."""
    return str(object_store_bytes(_shm(memory, spec, settings), settings))


def _driver_env(settings: Settings, driver: bool) -> list[dict]:
    """The head pod runs the driver, the one process that may fetch a hub model (it
    stages it in the job's storage for the workers)."""
    if driver and settings.rayjob.allow_model_downloads:
        return [{"name": "FINETUNE_ALLOW_DOWNLOADS", "value": "1"}]
    return []


def submitter_template(job_obj: dict, spec: FineTuneJobSpec, settings: Settings) -> dict:
    """The pod running `ray job submit`; its log carries the driver's progress lines."""
    name, _, uid = job_identity(job_obj)
    cpu, memory = settings.rayjob.submitter_cpu, settings.rayjob.submitter_memory
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{
            "name": SUBMITTER_CONTAINER,
            "image": submitter_image(settings),
            "imagePullPolicy": settings.rayjob.image_pull_policy,
            "resources": _resources(cpu, memory),
            "securityContext": container_security(settings),
        }],
        "securityContext": pod_security(settings),
    }
    if settings.rayjob.service_account:
        pod["serviceAccountName"] = settings.rayjob.service_account
    return {"metadata": {"labels": naming.owned_labels(name, uid, naming.COMPONENT_RAYJOB)}, "spec": pod}
