"""The FineTuneJob custom resource: its identity, spec and whole manifest.

The training part of the spec is the trainer's `TrainingConfig`, embedded unchanged;
this module adds what only Kubernetes needs (resources, scheduling, credentials), and
the manifest embeds the status the operator writes (its models are in `api_status`).
The CRD in `deploy/crds/` is generated from these models
(`finetune crd`).
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from finetune_operator.accelerators import RAY_ACCELERATOR_TYPES, unknown_ray_type_message
# The status models live in api_status; the manifest embeds them, and callers have
# always found them here.
from finetune_operator.api_status import (  # noqa: F401
    PHASES, TERMINAL_PHASES, BestTrial, Condition, FineTuneJobStatus, Phase, Progress,
)
from finetune_trainer.api import (
    Distributed,
    JobConfig,
    OutputSpec,
    Rule,
    ScalingSpec,
    Spec,
    TrainingConfig,
    distribution_problem_in,
)

# The one place the API's identity is spelled.
GROUP = "finetune.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FineTuneJob"
PLURAL = "finetunejobs"
SINGULAR = "finetunejob"
SHORT_NAMES = ("ftj",)
CATEGORIES = ("ml", "finetune")

# Kubernetes resource quantities such as 500m, 2, 1.5, 8Gi, 512M.
# Bounded so CEL rules on quantities (`matches`) have a small worst-case cost.
QUANTITY_MAX_LENGTH = 32
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def parse_quantity(value: str) -> float:
    """A resource quantity as a plain number (CPUs, or bytes for memory)."""
    match = re.fullmatch(QUANTITY_PATTERN, value)
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 2, 500m or 8Gi")
    suffix = match.group(2) or ""
    number = float(value[: len(value) - len(suffix)])
    factors = {
        "": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    }
    return number * factors[suffix]


# ------------------------------------------------------------------------ resources


class ComputeSpec(Spec):
    """CPU, memory and GPUs for one Ray pod; used as both request and limit."""

    cpu: str = Field(default="2", pattern=QUANTITY_PATTERN, max_length=QUANTITY_MAX_LENGTH)
    """CPU quantity, for example `4` or `3500m`."""

    memory: str = Field(default="8Gi", pattern=QUANTITY_PATTERN, max_length=QUANTITY_MAX_LENGTH)
    """Memory quantity, for example `16Gi`."""

    gpu: int = Field(default=0, ge=0, le=64)
    """GPUs (`nvidia.com/gpu`). Each GPU gets its own Ray Train worker, so a pod with
    4 GPUs runs 4 data-parallel workers."""

    ephemeral_storage: Optional[str] = Field(
        default=None, pattern=QUANTITY_PATTERN, max_length=QUANTITY_MAX_LENGTH)
    """Local disk to request for checkpoints and the model (a request, not a limit);
    defaults to the operator's setting."""

    # A quantity is positive exactly when it has a non-zero digit.
    RULES = (
        Rule("self.cpu.matches('[1-9]')", "cpu must be a positive quantity",
             lambda s: parse_quantity(s.cpu) > 0, lambda s: f"got {s.cpu!r}"),
    )

    # The same rule, checked on the field first, so the offline error names the field
    # itself (the API server reports it on the object).
    @field_validator("cpu")
    @classmethod
    def _positive_cpu(cls, value: str) -> str:
        if parse_quantity(value) <= 0:
            raise ValueError(f"{cls.RULES[0].message} (got {value!r})")
        return value


class HeadSpec(Spec):
    """The Ray head pod. It runs the trainer's driver, not training itself."""

    cpu: str = Field(default="1", pattern=QUANTITY_PATTERN, max_length=QUANTITY_MAX_LENGTH)
    """CPU quantity."""

    memory: str = Field(default="4Gi", pattern=QUANTITY_PATTERN, max_length=QUANTITY_MAX_LENGTH)
    """Memory quantity."""

    ephemeral_storage: Optional[str] = Field(
        default=None, pattern=QUANTITY_PATTERN, max_length=QUANTITY_MAX_LENGTH)
    """Local disk to request (the export reads the best checkpoint here); defaults to
    the operator's setting."""


class Toleration(Spec):
    """A pod toleration, as in the Kubernetes core API."""

    key: Optional[str] = None
    """Taint key; empty with operator Exists matches every taint."""

    operator: Literal["Equal", "Exists"] = "Equal"
    """`Equal` or `Exists`."""

    value: Optional[str] = None
    """Taint value, for operator Equal."""

    effect: Optional[Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]] = None
    """Taint effect to match; empty matches all."""

    toleration_seconds: Optional[int] = None
    """For NoExecute: how long the pod stays bound after the taint appears."""


class ResourcesSpec(Spec):
    """Pods and hardware of the job's Ray cluster."""

    workers: int = Field(default=1, ge=1, le=1024)
    """Ray worker pods: one Ray Train worker each, or one per GPU when worker.gpu > 1."""

    worker: ComputeSpec = Field(default_factory=ComputeSpec)
    """Resources of each worker pod."""

    head: HeadSpec = Field(default_factory=HeadSpec)
    """Resources of the head pod."""

    image: Optional[str] = None
    """Trainer image; defaults to the operator's configured image."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the worker pods must match."""

    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    """Tolerations of the worker pods."""

    accelerator_type: Optional[str] = None
    """GPU model as the cluster's node label value, for example `nvidia-tesla-a100`;
    worker pods select nodes on the operator's accelerator label
    (`cloud.google.com/gke-accelerator` by default). Only places pods; see
    rayAcceleratorType for Ray."""

    ray_accelerator_type: Optional[Literal[RAY_ACCELERATOR_TYPES]] = None  # type: ignore[valid-type]
    """GPU model as Ray names it (`A100`, `H100`, `L4`, ...): Ray Train workers ask for
    this accelerator. Optional; a name Ray does not detect on the nodes means the
    workers can never start."""

    shared_memory: Optional[str] = Field(default=None, pattern=QUANTITY_PATTERN, max_length=QUANTITY_MAX_LENGTH)
    """Size of /dev/shm in each pod; defaults to a quarter of the pod's memory."""

    distributed: Distributed = "ddp"
    """How the Ray Train workers share the model. `ddp` (default): each worker holds a
    whole copy and gradients are averaged. `fsdp`: FSDP2 shards parameters, gradients
    and optimizer state across the workers, so each holds about 1/N of them; needs at
    least 2 workers (workers x worker.gpu), and runs the full, partial,
    featureExtraction and lora strategies."""

    RULES = (
        *(Rule(f"!has(self.{name}) || (has(self.worker) && self.worker.gpu > 0)",
               f"{name} needs worker.gpu > 0",
               lambda s, field=field: getattr(s, field) is None or s.worker.gpu > 0)
          for field, name in (("accelerator_type", "acceleratorType"), ("ray_accelerator_type", "rayAcceleratorType"))),
        Rule("!has(self.distributed) || self.distributed != 'fsdp' || (has(self.workers) && self.workers > 1)"
             " || (has(self.worker) && self.worker.gpu > 1)",
             "distributed fsdp needs at least 2 workers (workers x worker.gpu); use ddp for one worker",
             lambda s: s.distributed != "fsdp" or s.scaling().num_workers > 1,
             lambda s: f"workers x worker.gpu gives {s.scaling().num_workers}"),
    )

    @field_validator("ray_accelerator_type", mode="before")
    @classmethod
    def _known_ray_type(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in RAY_ACCELERATOR_TYPES:
            raise ValueError(unknown_ray_type_message(value))
        return value

    def scaling(self) -> ScalingSpec:
        """What the trainer needs to know of these resources: one Ray Train worker per
        GPU (a pod's GPUs are not shared by one process), the pod's CPUs split among
        them, half a CPU per pod left for Ray and a Tune trial's driver."""
        per_pod = max(self.worker.gpu, 1)
        cpus = parse_quantity(self.worker.cpu)
        usable = max(cpus - 0.5, 0.5) if cpus >= 1 else cpus
        # By the YAML names, so a count out of ScalingSpec's range is reported under
        # the name a JobConfig gives it (numWorkers), as it always was.
        return ScalingSpec(
            numWorkers=self.workers * per_pod,
            cpusPerWorker=usable / per_pod,
            gpusPerWorker=1.0 if self.worker.gpu else 0.0,
            acceleratorType=self.ray_accelerator_type,
            distributed=self.distributed,
        )


# -------------------------------------------------------------------- output, scheduling


class SecretRef(Spec):
    """A Secret in the job's own namespace."""

    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)
    """Name of the Secret. It must hold `AWS_ACCESS_KEY_ID` and
    `AWS_SECRET_ACCESS_KEY`; it is read from the FineTuneJob's namespace only."""


class JobOutputSpec(OutputSpec):
    """Where the model, metrics and checkpoints go, and the credentials to write
    there."""

    secret_ref: Optional[SecretRef] = None
    """Secret with the S3 credentials, in the job's namespace."""


class SchedulingSpec(Spec):
    """Queueing, priority and lifetime of the job on the cluster."""

    queue_name: Optional[str] = Field(default=None, pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)
    """Kueue LocalQueue to submit to. When set, Kueue admits the job; the operator
    only labels and suspends it."""

    priority_class_name: Optional[str] = Field(default=None, pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)
    """PriorityClass of the Ray pods; also orders the operator's own queue."""

    suspend: bool = False
    """Suspend the job: its Ray cluster is deleted, and it resumes from its last
    checkpoint when set back to false."""

    active_deadline_seconds: Optional[int] = Field(default=None, ge=1)
    """Fail the job when it has run this long. GPU jobs that set none get the
    operator's default deadline."""

    backoff_limit: int = Field(default=0, ge=0, le=100)
    """Retries on a new Ray cluster after a failure; each resumes from the last
    checkpoint."""

    ttl_seconds_after_finished: Optional[int] = Field(default=None, ge=0)
    """Seconds the finished job's Ray head pod is kept (to read logs) before KubeRay
    deletes the Ray cluster; the worker pods are deleted as soon as the job ends. The
    RayJob itself stays until the FineTuneJob is deleted. Defaults to the operator's
    setting."""


# ------------------------------------------------------------------------------ spec


class FineTuneJobSpec(TrainingConfig):
    """The desired fine-tune: the training configuration plus how it runs on
    Kubernetes."""

    output: JobOutputSpec
    """Where results go, and the credentials to write there."""

    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    """Pods and hardware."""

    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec)
    """Queueing, priority and lifetime."""

    output_policy: Literal["Retain", "Delete"] = "Retain"
    """What happens to the artifacts in storage when the FineTuneJob is deleted."""

    RULES = (
        *TrainingConfig.RULES,
        Rule("!has(self.strategy) || self.strategy.type != 'qlora'"
             " || (has(self.resources) && has(self.resources.worker) && self.resources.worker.gpu > 0)",
             "strategy.type qlora needs resources.worker.gpu > 0 (4-bit loading with bitsandbytes needs a CUDA GPU)",
             lambda s: s.strategy.type != "qlora" or s.resources.worker.gpu > 0),
        Rule("!has(self.resources) || !has(self.resources.distributed) || self.resources.distributed != 'fsdp'"
             " || !has(self.strategy) || self.strategy.type != 'gradualUnfreezing'",
             "resources.distributed fsdp cannot run strategy.type gradualUnfreezing; use ddp",
             lambda s: s.resources.distributed != "fsdp" or s.strategy.type != "gradualUnfreezing"),
        Rule("!has(self.resources) || !has(self.resources.distributed) || self.resources.distributed != 'fsdp'"
             " || !has(self.training) || self.training.precision != 'fp16'",
             "resources.distributed fsdp cannot run training.precision fp16; use bf16 or fp32",
             lambda s: s.resources.distributed != "fsdp" or s.training.precision != "fp16"),
    )

    # Replaces TrainingConfig's validator of the same name: after the rules, the
    # strategies and precisions a sweep may choose are checked too (offline only).
    @model_validator(mode="after")
    def _obey_rules(self) -> "FineTuneJobSpec":
        self.check_half_precision()
        self.check_rules()
        problem = distribution_problem_in(self.resources.distributed, self.resources.scaling().num_workers, self,
                                          field="resources.distributed",
                                          workers_field="resources.workers x resources.worker.gpu")
        if problem:
            raise ValueError(problem)
        return self

    def training_config(self) -> TrainingConfig:
        """The part of the spec the trainer sees."""
        document = self.to_dict()
        for key in ("resources", "scheduling", "outputPolicy"):
            document.pop(key, None)
        document["output"].pop("secretRef", None)
        return TrainingConfig.model_validate(document)

    def job_config(self, run_name: str) -> JobConfig:
        """The trainer's whole input for this job."""
        return JobConfig(name=run_name, config=self.training_config(), scaling=self.resources.scaling())


# Fields a user may change on a live job; any other spec change is refused.
MUTABLE_SPEC_PATHS = (
    ("scheduling", "suspend"),
    ("scheduling", "ttlSecondsAfterFinished"),
    ("scheduling", "activeDeadlineSeconds"),
)


# -------------------------------------------------------------------------- manifest


# ObjectMeta's other fields, as the API server knows them: accepted (a manifest saved
# with `kubectl get -o yaml` carries them) and not used. Any other key is a typo, which
# the server refuses under kubectl's strict field validation, and so do we.
SERVER_METADATA_FIELDS = ("generateName", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
                          "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
                          "managedFields")


class ObjectMeta(Spec):
    """The metadata fields a manifest may carry. The server-set ones
    (SERVER_METADATA_FIELDS) are accepted and ignored; any other key is refused."""

    model_config = Spec.model_config | {"extra": "forbid"}

    @model_validator(mode="before")
    @classmethod
    def _set_aside_server_fields(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k not in SERVER_METADATA_FIELDS}
        return value

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    """Job name: lowercase letters, digits, '-' and '.'."""

    namespace: Optional[str] = Field(default=None, max_length=63, pattern=DNS_LABEL_PATTERN)
    """Namespace."""

    labels: dict[str, str] = Field(default_factory=dict)
    """Labels."""

    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations."""


class FineTuneJob(Spec):
    """A whole FineTuneJob manifest."""

    api_version: Literal[API_VERSION]  # type: ignore[valid-type]
    """Must be finetune.dev/v1alpha1."""

    kind: Literal[KIND]  # type: ignore[valid-type]
    """Must be FineTuneJob."""

    metadata: ObjectMeta
    """Name, namespace, labels."""

    spec: FineTuneJobSpec
    """The desired fine-tune."""

    status: Optional[FineTuneJobStatus] = None
    """Written by the operator."""

