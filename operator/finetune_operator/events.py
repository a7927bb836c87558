"""The fixed set of Kubernetes Event reasons the operator emits, and their messages.

A closed set lets users and alerts match on `reason` (`kubectl get events
--field-selector reason=DeadlineExceeded`) without parsing prose. Each reason knows
whether it is a Normal or a Warning event.
"""

from __future__ import annotations

from enum import Enum
from typing import Optional

from finetune_operator.api import TERMINAL_PHASES, Phase


class EventReason(str, Enum):
    """Why the operator recorded an Event on a FineTuneJob."""

    ACCEPTED = "Accepted"
    QUEUED = "Queued"
    ADMITTED = "Admitted"
    RAYJOB_CREATED = "RayJobCreated"
    RUNNING = "Running"
    RETRYING = "Retrying"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    RAYJOB_UPDATED = "RayJobUpdated"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    INVALID_SPEC = "InvalidSpec"
    SPEC_CHANGE_REFUSED = "SpecChangeRefused"
    STORAGE_NOT_ALLOWED = "StorageNotAllowed"
    RESOURCES_NOT_ALLOWED = "ResourcesNotAllowed"
    SECRET_NOT_FOUND = "SecretNotFound"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    RAYJOB_MISSING = "RayJobMissing"
    RECONCILE_ERROR = "ReconcileError"

    @property
    def event_type(self) -> str:
        """`Warning` for problems a person should look at, else `Normal`."""
        return "Warning" if self in _WARNINGS else "Normal"


_WARNINGS = frozenset({
    EventReason.RETRYING,
    EventReason.FAILED,
    EventReason.INVALID_SPEC,
    EventReason.SPEC_CHANGE_REFUSED,
    EventReason.STORAGE_NOT_ALLOWED,
    EventReason.RESOURCES_NOT_ALLOWED,
    EventReason.SECRET_NOT_FOUND,
    EventReason.DEADLINE_EXCEEDED,
    EventReason.RAYJOB_MISSING,
    EventReason.RECONCILE_ERROR,
})

# Events for phases entered, keyed by phase.
PHASE_EVENTS = {
    Phase.QUEUED: EventReason.QUEUED,
    Phase.RUNNING: EventReason.RUNNING,
    Phase.SUCCEEDED: EventReason.SUCCEEDED,
    Phase.FAILED: EventReason.FAILED,
    Phase.SUSPENDED: EventReason.SUSPENDED,
}


def status_change_events(old: dict, new: dict,
                         detail_reason: Optional[EventReason] = None) -> list[tuple[EventReason, str]]:
    """The Events (reason, message) one status write calls for: the phase entered, or
    `detail_reason` when it explains a new message; and Retrying when the attempt
    number grew on a live job. Pure, so the reconcile loop only posts them."""
    out: list[tuple[EventReason, str]] = []
    old_phase, new_phase = old.get("phase"), new.get("phase")
    if new_phase != old_phase or (detail_reason is not None and old.get("message") != new.get("message")):
        reason = detail_reason or PHASE_EVENTS.get(new_phase or "")
        if reason is None and new_phase == Phase.PENDING and old_phase == Phase.QUEUED:
            reason = EventReason.ADMITTED  # a new job's first Event is RayJobCreated
        if reason is not None:
            out.append((reason, new.get("message") or new_phase or ""))
    old_attempt, new_attempt = old.get("attempt") or 0, new.get("attempt") or 0
    if old_attempt and new_attempt > old_attempt and new_phase not in TERMINAL_PHASES:
        out.append((EventReason.RETRYING, new.get("message") or f"attempt {new_attempt}"))
    return out


# Kubernetes truncates Event messages at 1 KiB; keep ours well inside it.
MAX_MESSAGE = 1000


def clip(message: str) -> str:
    """A message short enough for an Event."""
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def rayjob_created_message(rayjob: str, attempt: int) -> str:
    return f"created RayJob {rayjob} (attempt {attempt})"


def rayjob_updated_message(rayjob: str, changes: dict[str, tuple[object, object]]) -> str:
    """`suspended RayJob x`, or `updated RayJob x: activeDeadlineSeconds 60 -> 3600`,
    for the fields (with their old and new values) one patch changed."""
    def show(value: object) -> str:
        return "unset" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    if set(changes) == {"suspend"}:
        return f"{'suspended' if changes['suspend'][1] else 'resumed'} RayJob {rayjob}"
    detail = ", ".join(f"{key} {show(old)} -> {show(new)}" for key, (old, new) in sorted(changes.items()))
    return clip(f"updated RayJob {rayjob}: {detail}")


def spec_change_refused_message(paths: list[str]) -> str:
    return clip(
        "spec fields cannot change on a live job: " + ", ".join(paths)
        + "; only scheduling.suspend, scheduling.ttlSecondsAfterFinished and"
        " scheduling.activeDeadlineSeconds may change. Delete and re-create the job instead."
    )


def secret_not_found_message(name: str, namespace: str) -> str:
    return clip(f"output.secretRef.name: Secret {name!r} not found in namespace {namespace}")
