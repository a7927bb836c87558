"""The operator's settings: one typed object, read once at start-up.

Values come from a YAML file (usually a mounted ConfigMap, path in
`FINETUNE_SETTINGS_FILE`) and from `FINETUNE_*` environment variables, which win over
the file. Nested fields use a double underscore in the environment
(`FINETUNE_RAYJOB__RAY_VERSION`); maps and lists take JSON
(`FINETUNE_STORAGE_PREFIXES='{"team-a": "s3://team-a/"}'`), and lists also take a
comma-separated string. A bad value stops the operator with a message that names the
variable or the file key.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from finetune_operator.api import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, QUANTITY_PATTERN
from finetune_operator import __version__
from finetune_operator.errors import UserError

ENV_PREFIX = "FINETUNE_"
NESTED_DELIMITER = "__"
SETTINGS_FILE_VARIABLE = "FINETUNE_SETTINGS_FILE"

# The trainer image built from deploy/docker/trainer.Dockerfile, tagged with the
# package version; the Helm chart names the same repository.
DEFAULT_IMAGE = f"ghcr.io/finetune-dev/finetune-trainer:{__version__}"


class RayJobDefaults(BaseModel):
    """How the operator shapes every RayJob, where the FineTuneJob says nothing."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    ray_version: str = Field(default="2.60.0", pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    """Ray version of the trainer image (rayClusterSpec.rayVersion)."""

    image_pull_policy: str = Field(default="IfNotPresent", pattern=r"^(Always|IfNotPresent|Never)$")
    """Pull policy of the Ray containers."""

    service_account: Optional[str] = Field(default=None, pattern=DNS_SUBDOMAIN_PATTERN)
    """ServiceAccount of the Ray pods; none means the namespace's default."""

    shm_ratio: float = Field(default=0.25, gt=0, le=1)
    """Size of /dev/shm as a share of the pod's memory, unless the job sets
    resources.sharedMemory; PyTorch data loaders pass batches through it."""

    object_store_share_of_shm: float = Field(default=0.5, gt=0, lt=1)
    """Ray's object store size (rayStartParams object-store-memory) as a share of the
    pod's /dev/shm, so the store always fits in shared memory and the rest is left to
    NCCL and data loaders. Never below Ray's minimum of 75 MiB."""

    submitter_image: Optional[str] = Field(default=None, min_length=1)
    """Image of the pod that runs `ray job submit`; it needs only the Ray CLI, not the
    trainer. None means `rayproject/ray:<ray_version>-py311-cpu`."""

    submitter_cpu: str = Field(default="500m", pattern=QUANTITY_PATTERN)
    """CPU of the pod that runs `ray job submit` and follows the driver's log."""

    submitter_memory: str = Field(default="512Mi", pattern=QUANTITY_PATTERN)
    """Memory of the submitter pod."""

    ttl_seconds_after_finished: int = Field(default=60, ge=0)
    """Seconds the Ray head outlives a finished job (to read logs) before the Ray
    cluster is deleted, unless the job sets scheduling.ttlSecondsAfterFinished. The
    workers go at once when deletion_rules is on."""

    deletion_rules: bool = True
    """Use KubeRay's deletionStrategy.deletionRules (KubeRay 1.6 or newer, or 1.5 with
    its RayJobDeletionPolicy feature gate turned on): workers are deleted as soon as
    the job ends, the rest of the cluster after the TTL. Off: the older
    shutdownAfterJobFinishes, which keeps every pod for the whole TTL."""

    pre_running_deadline_seconds: Optional[int] = Field(default=None, ge=1)
    """Fail a RayJob whose cluster is not running after this many seconds (image pull
    errors, unschedulable pods); none means wait for ever (GPU jobs: see
    gpu_pre_running_deadline_seconds)."""

    gpu_pre_running_deadline_seconds: Optional[int] = Field(default=1800, ge=1)
    """pre_running_deadline_seconds for jobs with GPU workers, so a job whose GPUs never
    come (wrong accelerator, no quota) does not wait for ever; none means no deadline."""

    gpu_active_deadline_seconds: Optional[int] = Field(default=172800, ge=1)
    """activeDeadlineSeconds given to GPU jobs that set no scheduling.activeDeadlineSeconds
    (48 hours), so a stuck job does not hold GPUs indefinitely; none means no deadline."""

    worker_ephemeral_storage: Optional[str] = Field(default="20Gi", pattern=QUANTITY_PATTERN)
    """Ephemeral-storage request of worker pods (checkpoints are written to local disk
    before upload), unless the job sets resources.worker.ephemeralStorage; none requests
    nothing."""

    head_ephemeral_storage: Optional[str] = Field(default="10Gi", pattern=QUANTITY_PATTERN)
    """Ephemeral-storage request of the head pod (the export downloads the best
    checkpoint), unless the job sets resources.head.ephemeralStorage."""

    allow_model_downloads: bool = False
    """Let every job's driver download a hub-id model.source (sets
    FINETUNE_ALLOW_DOWNLOADS=1 on the head pod). The driver downloads it once into the
    job's storage and the workers load it from there. A job can also opt in with
    model.allowDownload."""

    run_as_user: int = Field(default=1000, ge=1)
    """Non-root UID of the Ray containers."""

    accelerator_node_label: Optional[str] = "cloud.google.com/gke-accelerator"
    """Node label that resources.acceleratorType selects on; none disables it."""

    gpu_toleration: bool = True
    """Tolerate the usual `nvidia.com/gpu` NoSchedule taint on GPU workers."""


class JobLimits(BaseModel):
    """The most one FineTuneJob of a namespace may ask for; a job asking more fails
    (`ResourcesNotAllowed`, naming the field). Unset: no limit."""

    model_config = ConfigDict(extra="forbid")

    max_workers: Optional[int] = Field(default=None, ge=1)
    """Ray worker pods (resources.workers)."""

    max_gpus: Optional[int] = Field(default=None, ge=0)
    """GPUs of all workers together (resources.workers x resources.worker.gpu)."""

    max_cpu: Optional[str] = Field(default=None, pattern=QUANTITY_PATTERN)
    """CPU of the head and all workers together."""

    max_memory: Optional[str] = Field(default=None, pattern=QUANTITY_PATTERN)
    """Memory of the head and all workers together."""


class Settings(BaseSettings):
    """Everything the operator is configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        case_sensitive=False,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Namespaces to watch; empty means every namespace."""

    default_image: str = Field(default=DEFAULT_IMAGE, min_length=1)
    """Trainer image for jobs that set no resources.image."""

    concurrency_limit: int = Field(default=4, ge=1)
    """Jobs that may run at once in a namespace (jobs sent to Kueue do not count)."""

    namespace_limits: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    """Per-namespace overrides of concurrency_limit."""

    storage_prefixes: dict[str, str] = Field(default_factory=dict)
    """Per namespace, the storage prefix every output.uri must lie under. A namespace
    not listed may write anywhere."""

    read_prefixes: dict[str, list[str]] = Field(default_factory=dict)
    """Per namespace, the prefixes every s3:// model.source and data source must lie
    under (the namespace's storage prefix is always readable, so a job can read what
    an earlier one wrote). A namespace not listed may read whatever its credentials
    reach."""

    job_limits: dict[str, JobLimits] = Field(default_factory=dict)
    """Per namespace, the most one job may ask for (workers, GPUs, CPU, memory); the
    key `*` applies to namespaces not listed."""

    priority_classes: dict[str, int] = Field(default_factory=dict)
    """Value of each PriorityClass name, to order the operator's queue (mirror the
    cluster's PriorityClass objects; unknown names count as 0)."""

    metrics_port: int = Field(default=8080, ge=1, le=65535)
    """Port of the Prometheus /metrics endpoint."""

    health_port: int = Field(default=8081, ge=1, le=65535)
    """Port of the liveness/readiness endpoint."""

    default_s3_endpoint: Optional[str] = Field(default=None, pattern=r"^https?://[^\s/]+(/.*)?$")
    """S3 endpoint given to jobs whose output.endpoint is empty (in-cluster MinIO)."""

    default_s3_region: Optional[str] = None
    """S3 region given to jobs whose output.region is empty."""

    rayjob: RayJobDefaults = Field(default_factory=RayJobDefaults)
    """RayJob defaults."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):  # type: ignore[no-untyped-def]
        # Environment first: it overrides the file, whose values arrive as init kwargs.
        return env_settings, init_settings

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("namespaces")
    @classmethod
    def _namespace_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(DNS_LABEL_PATTERN, name):
                raise ValueError(f"{name!r} is not a namespace name (lowercase letters, digits and '-')")
        return value

    @field_validator("storage_prefixes")
    @classmethod
    def _prefixes(cls, value: dict[str, str]) -> dict[str, str]:
        for namespace, prefix in value.items():
            if not prefix.strip() or ".." in prefix.split("/"):
                raise ValueError(f"prefix for namespace {namespace!r} must be a non-empty path without '..'")
        return value

    @field_validator("read_prefixes")
    @classmethod
    def _read_prefixes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for namespace, prefixes in value.items():
            for prefix in prefixes:
                if not prefix.startswith("s3://") or ".." in prefix.split("/"):
                    raise ValueError(f"read prefix {prefix!r} for namespace {namespace!r} must be an s3:// "
                                     "prefix without '..'")
        return value

    # ---------------------------------------------------------------- lookups

    def watches(self, namespace: str) -> bool:
        """Whether the operator handles jobs in `namespace`."""
        return not self.namespaces or namespace in self.namespaces

    def limit_for(self, namespace: str) -> int:
        """How many jobs may run at once in `namespace`."""
        return self.namespace_limits.get(namespace, self.concurrency_limit)

    def storage_prefix(self, namespace: str) -> Optional[str]:
        """The prefix outputs of `namespace` must lie under, if one is set."""
        return self.storage_prefixes.get(namespace)

    def job_limits_for(self, namespace: str) -> Optional[JobLimits]:
        """The most one job of `namespace` may ask for, if limited."""
        return self.job_limits.get(namespace, self.job_limits.get("*"))

    def read_prefixes_for(self, namespace: str) -> Optional[list[str]]:
        """The prefixes s3:// sources of `namespace` must lie under (its storage
        prefix among them), or None when its reads are not restricted."""
        prefixes = self.read_prefixes.get(namespace)
        if prefixes is None:
            return None
        own = self.storage_prefix(namespace)
        return [*prefixes, own] if own else list(prefixes)

    def priority_value(self, priority_class: Optional[str]) -> int:
        """The queue priority of a PriorityClass name (0 when unknown or unset)."""
        return self.priority_classes.get(priority_class, 0) if priority_class else 0


def _where(location: tuple[Any, ...], settings_file: Optional[str]) -> str:
    """Both spellings of a settings field: its variable and its file key."""
    parts = [str(part) for part in location if not isinstance(part, int)]
    if not parts:
        return "settings"
    # Map keys (namespace names) end the field path; the variable is the field's.
    field_parts = parts[:2] if parts[0] == "rayjob" else parts[:1]
    variable = ENV_PREFIX + NESTED_DELIMITER.join(part.upper() for part in field_parts)
    key = ".".join(parts)
    return f"{variable} (or {key} in {settings_file})" if settings_file else f"{variable} ({key})"


def load_settings(settings_file: Optional[str] = None) -> Settings:
    """Read the settings once, from the file and the environment.

    `settings_file` defaults to `$FINETUNE_SETTINGS_FILE`. Raises UserError naming
    the variable or key of every bad value."""
    settings_file = settings_file or os.environ.get(SETTINGS_FILE_VARIABLE) or None
    document: dict[str, Any] = {}
    if settings_file:
        try:
            loaded = yaml.safe_load(Path(settings_file).read_text())
        except OSError as err:
            raise UserError(
                f"{SETTINGS_FILE_VARIABLE}: cannot read {settings_file}: {err.strerror}"
            ) from None
        except yaml.YAMLError as err:
            raise UserError(f"{SETTINGS_FILE_VARIABLE}: {settings_file} is not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"{SETTINGS_FILE_VARIABLE}: {settings_file} must hold a mapping of settings")
        document = loaded or {}
    try:
        return Settings(**document)
    except ValidationError as err:
        problems = [
            f"{_where(e['loc'], settings_file)}: {e['msg']}"
            + (f" (got {e['input']!r})" if isinstance(e.get("input"), (str, int, float)) else "")
            for e in err.errors()
        ]
        raise UserError("invalid operator settings:\n  " + "\n  ".join(problems)) from None
    except SettingsError as err:
        raise UserError(f"invalid operator settings: {err} (maps and lists take JSON)") from None
