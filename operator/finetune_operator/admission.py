"""Multi-tenancy rules and the per-namespace job queue, as pure functions.

Which outputs a namespace may write, which Secrets a job may name, which spec fields
may change on a live job, and which waiting jobs get a free slot. The reconcile loop
gathers the facts (job objects, settings); these functions only decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Iterable, Optional
from urllib.parse import unquote

from finetune_operator import naming
from finetune_operator.api import MUTABLE_SPEC_PATHS, TERMINAL_PHASES, FineTuneJobSpec, Phase, parse_quantity
from finetune_operator.events import EventReason
from finetune_operator.settings import Settings

class AdmissionState(StrEnum):
    """Run it now, let it wait, or refuse it. Each equals (and prints as) its value."""

    ADMITTED = "admitted"
    QUEUED = "queued"
    REJECTED = "rejected"


@dataclass(frozen=True)
class AdmissionDecision:
    """What the operator decided for one job, with the reason and message that say why."""

    state: AdmissionState
    reason: str = "Admitted"
    message: str = ""
    position: Optional[int] = None
    """1-based place in the namespace's queue, for queued jobs."""

    @property
    def admitted(self) -> bool:
        return self.state == AdmissionState.ADMITTED

    @property
    def queued(self) -> bool:
        return self.state == AdmissionState.QUEUED

    @property
    def rejected(self) -> bool:
        return self.state == AdmissionState.REJECTED


ADMITTED = AdmissionDecision(AdmissionState.ADMITTED)
# A job with a Kueue LocalQueue: Kueue decides when it starts, not our queue.
KUEUE_ADMITS = AdmissionDecision(AdmissionState.ADMITTED, "Kueue", "admission is left to Kueue")


# ------------------------------------------------------------------------ tenancy checks


def _under_prefix(uri: str, prefix: str) -> bool:
    """Whether `uri` lies at or below `prefix`, on a path-segment boundary: prefix
    `s3://team-a` admits `s3://team-a/x` but not `s3://team-a-evil/x`. The URI is
    judged as written and with its %-escapes decoded (a store or proxy that decodes
    them must not see another path), and a `..` segment or a backslash in either is
    never under any prefix."""
    base = prefix.rstrip("/")
    for form in (uri, unquote(uri)):
        if "\\" in form or ".." in form.split("/"):
            return False
        if not (form == base or form.startswith(base + "/")):
            return False
    return True


def _same_endpoint(a: Optional[str], b: Optional[str]) -> bool:
    return (a or "").rstrip("/").lower() == (b or "").rstrip("/").lower()


def check_shared_output(spec: FineTuneJobSpec) -> Optional[AdmissionDecision]:
    """A rejection when output.uri is not object storage. The pods of a job's Ray
    cluster share no volume: a local path would leave each worker's checkpoints on its
    own pod, where the export cannot read them. (`finetune run` accepts local paths:
    there every worker shares one disk.)"""
    uri = spec.output.uri
    if uri.startswith("s3://"):
        return None
    return AdmissionDecision(
        AdmissionState.REJECTED,
        EventReason.STORAGE_NOT_ALLOWED.value,
        f"output.uri: {uri!r} is a local path, but the job's Ray pods share no volume; jobs the operator "
        "runs need an s3:// URI (local paths work only with `finetune run`)",
    )


def check_storage(namespace: str, spec: FineTuneJobSpec, settings: Settings) -> Optional[AdmissionDecision]:
    """A rejection when output.uri is outside the namespace's allowed prefix (or on
    another endpoint than the platform's), when a source is outside what the namespace
    may read, or when the output is not shared storage."""
    prefix = settings.storage_prefix(namespace)
    if prefix is None:
        return check_sources(namespace, spec, settings) or check_shared_output(spec)
    uri = spec.output.uri
    if not _under_prefix(uri, prefix):
        return AdmissionDecision(
            AdmissionState.REJECTED,
            EventReason.STORAGE_NOT_ALLOWED.value,
            f"output.uri: {uri!r} is not allowed in namespace {namespace}; "
            f"outputs must lie under {prefix.rstrip('/')}/ (without '..', backslashes or %-escaped separators)",
        )
    endpoint = spec.output.endpoint
    if endpoint and not _same_endpoint(endpoint, settings.default_s3_endpoint):
        # The prefix names a path on the platform's store; the same path on another
        # server is outside what the platform can isolate.
        allowed = f"leave it empty or set {settings.default_s3_endpoint}" if settings.default_s3_endpoint \
            else "leave it empty"
        return AdmissionDecision(
            AdmissionState.REJECTED,
            EventReason.STORAGE_NOT_ALLOWED.value,
            f"output.endpoint: {endpoint!r} is not allowed in namespace {namespace}, whose outputs go to the "
            f"platform's storage under {prefix.rstrip('/')}/; {allowed}",
        )
    return check_sources(namespace, spec, settings) or check_shared_output(spec)


def check_sources(namespace: str, spec: FineTuneJobSpec, settings: Settings) -> Optional[AdmissionDecision]:
    """A rejection when an s3:// model or data source lies outside the prefixes the
    namespace may read (settings.read_prefixes); hub ids and paths inside the image
    are not storage and are left alone."""
    prefixes = settings.read_prefixes_for(namespace)
    if prefixes is None:
        return None
    data = spec.data
    for field_name, source in (("model.source", spec.model.source), ("data.train", data.train),
                               ("data.validation", data.validation), ("data.test", data.test)):
        if not source or not source.lower().startswith("s3:"):
            continue
        if not any(_under_prefix(source, prefix) for prefix in prefixes):
            allowed = ", ".join(f"{p.rstrip('/')}/" for p in prefixes)
            return AdmissionDecision(
                AdmissionState.REJECTED,
                EventReason.STORAGE_NOT_ALLOWED.value,
                f"{field_name}: {source!r} is not readable in namespace {namespace}; s3:// sources must lie "
                f"under {allowed}",
            )
    return None


def check_resources(namespace: str, spec: FineTuneJobSpec, settings: Settings) -> Optional[AdmissionDecision]:
    """A rejection when the job asks for more than one job of the namespace may
    (settings.job_limits): workers, GPUs, CPU or memory, the head's included."""
    limits = settings.job_limits_for(namespace)
    if limits is None:
        return None
    resources = spec.resources
    workers = resources.workers
    asked = [
        ("resources.workers", limits.max_workers, workers, str(workers), "worker pods"),
        ("resources.worker.gpu", limits.max_gpus, workers * resources.worker.gpu,
         f"{workers} x {resources.worker.gpu}", "GPUs"),
        ("resources.worker.cpu", limits.max_cpu and parse_quantity(limits.max_cpu),
         workers * parse_quantity(resources.worker.cpu) + parse_quantity(resources.head.cpu),
         f"{workers} x {resources.worker.cpu} + the head's {resources.head.cpu}", "CPU"),
        ("resources.worker.memory", limits.max_memory and parse_quantity(limits.max_memory),
         workers * parse_quantity(resources.worker.memory) + parse_quantity(resources.head.memory),
         f"{workers} x {resources.worker.memory} + the head's {resources.head.memory}", "memory"),
    ]
    shown = {"CPU": limits.max_cpu, "memory": limits.max_memory}
    for field_name, limit, total, how, what in asked:
        if limit is not None and total > limit:
            return AdmissionDecision(
                AdmissionState.REJECTED,
                EventReason.RESOURCES_NOT_ALLOWED.value,
                f"{field_name}: the job asks for {how} {what}, more than one job in namespace {namespace} may "
                f"use ({shown.get(what, limit)}); ask for less or have the platform team raise the limit",
            )
    return None


def check_secret_ref(namespace: str, spec_dict: dict[str, Any]) -> Optional[AdmissionDecision]:
    """A rejection when output.secretRef tries to name a Secret outside the job's
    namespace. Checked on the raw spec, before model validation, so the user sees a
    tenancy message rather than an 'unknown field' one."""
    ref = ((spec_dict.get("output") or {}).get("secretRef")) or {}
    if not isinstance(ref, dict):
        return None
    other = ref.get("namespace")
    name = ref.get("name")
    if (other is not None and other != namespace) or (isinstance(name, str) and "/" in name):
        return AdmissionDecision(
            AdmissionState.REJECTED,
            EventReason.INVALID_SPEC.value,
            f"output.secretRef: Secrets are read from the job's own namespace ({namespace}) only; "
            "give just the Secret's name (secretRef.name) and create the Secret there",
        )
    return None


# ------------------------------------------------------------------------ spec changes

_MUTABLE = {".".join(path) for path in MUTABLE_SPEC_PATHS}


def _diff(old: Any, new: Any, path: str, out: list[str]) -> None:
    if path in _MUTABLE:
        return
    # A block that is absent (or null) is the same as an empty one, so a leaf added
    # under a parent that did not exist is judged by its own path.
    if isinstance(old, dict) and new is None:
        new = {}
    elif isinstance(new, dict) and old is None:
        old = {}
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _diff(old.get(key), new.get(key), f"{path}.{key}" if path else key, out)
    elif old != new:
        out.append(path or "spec")


def _with_defaults(spec: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The spec as the model reads it, every default filled in; None if invalid."""
    try:
        return FineTuneJobSpec.model_validate(spec).model_dump(by_alias=True, mode="json")
    except ValueError:
        return None


def forbidden_changes(old_spec: dict[str, Any], new_spec: dict[str, Any]) -> list[str]:
    """Dotted spec paths that changed although only MUTABLE_SPEC_PATHS may change.

    Both specs are compared with their defaults filled in when both are valid, so
    leaving a field out and writing its default are the same (the API server fills
    in the defaults of a block the moment it appears). A key absent on one side and
    null on the other is no change, and so is an absent block and an empty one;
    lists compare as a whole (their path is reported once)."""
    old_full, new_full = _with_defaults(old_spec or {}), _with_defaults(new_spec or {})
    if old_full is None or new_full is None:
        old_full, new_full = old_spec or {}, new_spec or {}
    out: list[str] = []
    _diff(old_full, new_full, "", out)
    return out


# ----------------------------------------------------------------------------- queue


@dataclass(frozen=True)
class JobSummary:
    """What the queue needs to know about one FineTuneJob of a namespace."""

    name: str
    created: str
    """metadata.creationTimestamp (RFC 3339, so it sorts as text)."""
    priority: int = 0
    holds_slot: bool = False
    """Admitted earlier and not finished: it counts against the limit."""
    waiting: bool = True
    """Wants a slot (not finished, not suspended, not yet admitted)."""
    kueue: bool = False
    """Sent to a Kueue LocalQueue: Kueue admits it, not us."""


def job_priority(job_obj: dict, settings: Settings) -> int:
    """Queue priority: the value of spec.scheduling.priorityClassName in the settings'
    map, else the integer in the `finetune.dev/priority` label, else 0."""
    spec = job_obj.get("spec") or {}
    class_name = (spec.get("scheduling") or {}).get("priorityClassName")
    if class_name:
        return settings.priority_value(class_name)
    label = ((job_obj.get("metadata") or {}).get("labels") or {}).get(naming.PRIORITY_LABEL)
    try:
        return int(label) if label is not None else 0
    except ValueError:
        return 0


def summarize(job_obj: dict, settings: Settings) -> JobSummary:
    """A job's place in the queue, from its stored object and status.

    A job holds a slot from the moment its RayJob name is recorded in status (which
    happens before the RayJob is created) until it finishes or is suspended."""
    meta = job_obj.get("metadata") or {}
    spec = job_obj.get("spec") or {}
    status = job_obj.get("status") or {}
    scheduling = spec.get("scheduling") or {}
    phase = status.get("phase")
    finished = phase in TERMINAL_PHASES or meta.get("deletionTimestamp") is not None
    suspended = bool(scheduling.get("suspend"))
    holds = bool(status.get("rayJobName")) and not finished and not suspended and phase != Phase.QUEUED
    return JobSummary(
        name=meta.get("name", ""),
        created=meta.get("creationTimestamp") or "",
        priority=job_priority(job_obj, settings),
        holds_slot=holds,
        waiting=not holds and not finished and not suspended,
        kueue=bool(scheduling.get("queueName")),
    )


def admit(jobs: Iterable[JobSummary], limit: int) -> dict[str, AdmissionDecision]:
    """Decide every live job of one namespace.

    Jobs holding a slot stay admitted. Waiting jobs are ordered by priority (higher
    first), then creation time, then name, and take the free slots in that order; the
    rest are queued with their 1-based position. Kueue-managed jobs bypass this queue.
    Finished and suspended jobs get no decision."""
    decisions: dict[str, AdmissionDecision] = {}
    waiting: list[JobSummary] = []
    running = 0
    for job in jobs:
        if job.kueue and (job.waiting or job.holds_slot):
            decisions[job.name] = KUEUE_ADMITS
        elif job.holds_slot:
            running += 1
            decisions[job.name] = ADMITTED
        elif job.waiting:
            waiting.append(job)
    waiting.sort(key=lambda j: (-j.priority, j.created, j.name))
    free = max(limit - running, 0)
    for index, job in enumerate(waiting):
        if index < free:
            decisions[job.name] = ADMITTED
        else:
            position = index - free + 1
            decisions[job.name] = AdmissionDecision(
                AdmissionState.QUEUED,
                EventReason.QUEUED.value,
                f"waiting for a slot: position {position} in the namespace queue "
                f"({limit} may run at once)",
                position,
            )
    return decisions


def queue_depth(decisions: dict[str, AdmissionDecision]) -> int:
    """How many jobs wait in a namespace (for the queue-depth gauge)."""
    return sum(1 for decision in decisions.values() if decision.queued)

