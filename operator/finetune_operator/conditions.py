"""Status conditions in the Kubernetes `metav1.Condition` shape, and their times.

`lastTransitionTime` moves only when a condition's status flips; reason and message
always follow the latest observation. Times are RFC 3339 in UTC, as Kubernetes writes
them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

# Condition types, in the order they appear in status.
ACCEPTED = "Accepted"
QUEUED = "Queued"
RUNNING = "Running"
RETRYING = "Retrying"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SUSPENDED = "Suspended"
CONDITION_TYPES = (ACCEPTED, QUEUED, RUNNING, RETRYING, SUCCEEDED, FAILED, SUSPENDED)

# ------------------------------------------------------------------------------- time


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes times."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Optional[str]) -> Optional[datetime]:
    """A Kubernetes timestamp as an aware datetime, or None when absent or garbled."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# ------------------------------------------------------------------------- conditions


def set_condition(
    conditions: list[dict],
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
    generation: Optional[int] = None,
) -> list[dict]:
    """A copy of `conditions` with `type_` set. lastTransitionTime moves only when the
    condition's status flips (or it is new); reason and message always update."""
    updated: list[dict] = []
    found = False
    for condition in conditions:
        if condition.get("type") != type_:
            updated.append(dict(condition))
            continue
        found = True
        flipped = condition.get("status") != status
        new = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": (
                format_time(now) if flipped else condition.get("lastTransitionTime", format_time(now))
            ),
        }
        if generation is not None:
            new["observedGeneration"] = generation
        updated.append(new)
    if not found:
        new = {"type": type_, "status": status, "reason": reason, "message": message,
               "lastTransitionTime": format_time(now)}
        if generation is not None:
            new["observedGeneration"] = generation
        updated.append(new)
    order = {name: index for index, name in enumerate(CONDITION_TYPES)}
    return sorted(updated, key=lambda c: order.get(c.get("type", ""), len(order)))


def get_condition(conditions: list[dict], type_: str) -> Optional[dict]:
    """The condition of that type, or None."""
    return next((c for c in conditions if c.get("type") == type_), None)
