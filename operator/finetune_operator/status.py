"""FineTuneJob status from what the operator observed: a pure function of facts.

The facts are the job object (with its previous status), the validated spec or the
reason it is invalid, the RayJob (or None), the trainer's latest progress report,
the admission decision and the current time. The RayJob's two status fields map to
our phase through one explicit table, `RAYJOB_STATES`, so every KubeRay state has a
reviewed answer.

Two decisions worth knowing:

- A RayJob that disappears after we saw it running (someone deleted it) fails the job
  with reason RayJobMissing. Recreating it would fight whoever deleted it; the run
  name is stable, so re-creating the FineTuneJob resumes from the last checkpoint.
- A job still not finished `activeDeadlineSeconds` after its RayJob started fails
  with reason DeadlineExceeded even if KubeRay never reports it (KubeRay enforces the
  same deadline; this is the backstop for a RayJob stuck in a state KubeRay does not
  time out, such as a cluster that never starts). The reconcile loop then deletes the
  RayJob.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, Union

from finetune_operator import naming
from finetune_operator.admission import AdmissionDecision
from finetune_operator.api import TERMINAL_PHASES, FineTuneJobSpec, Phase
# Conditions and times live in `conditions`; status also offers them, as it always has.
from finetune_operator.conditions import (  # noqa: F401
    ACCEPTED, CONDITION_TYPES, FAILED, QUEUED, RETRYING, RUNNING, SUCCEEDED, SUSPENDED, format_time,
    get_condition, parse_time, set_condition,
)
from finetune_operator.events import EventReason
from finetune_trainer.api import ProgressReport, selection_metric

# Which condition is True in each phase (Pending has none of these).
_PHASE_CONDITION = {
    Phase.QUEUED: QUEUED,
    Phase.RUNNING: RUNNING,
    Phase.SUCCEEDED: SUCCEEDED,
    Phase.FAILED: FAILED,
    Phase.SUSPENDED: SUSPENDED,
}


# ------------------------------------------------------------------ RayJob state table


@dataclass(frozen=True)
class RayJobOutcome:
    """What one RayJob state means for the FineTuneJob."""

    phase: Phase
    reason: str
    retrying: bool = False


# KubeRay v1.7 status.jobDeploymentStatus -> our phase. "Complete" depends on the Ray
# job's own status (below); "Failed" takes KubeRay's status.reason when it gives one.
RAYJOB_STATES: dict[str, RayJobOutcome] = {
    "": RayJobOutcome(Phase.PENDING, "RayJobCreated"),
    "New": RayJobOutcome(Phase.PENDING, "RayJobCreated"),
    "Initializing": RayJobOutcome(Phase.PENDING, "Initializing"),
    "Waiting": RayJobOutcome(Phase.PENDING, "WaitingForSubmission"),
    "Scheduling": RayJobOutcome(Phase.PENDING, "Scheduling"),
    "Scheduled": RayJobOutcome(Phase.PENDING, "Scheduled"),
    "Running": RayJobOutcome(Phase.RUNNING, "Running"),
    "Retrying": RayJobOutcome(Phase.RUNNING, "Retrying", retrying=True),
    "Suspending": RayJobOutcome(Phase.SUSPENDED, "Suspending"),
    "Suspended": RayJobOutcome(Phase.SUSPENDED, "Suspended"),
    "Failed": RayJobOutcome(Phase.FAILED, "RayJobFailed"),
    "ValidationFailed": RayJobOutcome(Phase.FAILED, "ValidationFailed"),
}

# status.jobStatus of a Complete RayJob -> our phase.
COMPLETE_STATES: dict[str, RayJobOutcome] = {
    "SUCCEEDED": RayJobOutcome(Phase.SUCCEEDED, "Succeeded"),
    "FAILED": RayJobOutcome(Phase.FAILED, "AppFailed"),
    "STOPPED": RayJobOutcome(Phase.FAILED, "Stopped"),
}
COMPLETE_OTHERWISE = RayJobOutcome(Phase.FAILED, "CompletedWithoutSuccess")


def map_rayjob_state(deployment_status: Optional[str], job_status: Optional[str],
                     kuberay_reason: Optional[str] = None) -> RayJobOutcome:
    """Our phase and reason for a RayJob's (jobDeploymentStatus, jobStatus)."""
    deployment_status = deployment_status or ""
    if deployment_status == "Complete":
        return COMPLETE_STATES.get(job_status or "", COMPLETE_OTHERWISE)
    outcome = RAYJOB_STATES.get(deployment_status)
    if outcome is None:
        return RayJobOutcome(Phase.PENDING, "UnknownRayJobState")
    if outcome.phase == Phase.FAILED and kuberay_reason:
        return RayJobOutcome(Phase.FAILED, kuberay_reason)
    return outcome


def attempt_number(rayjob_status: dict, terminal: bool) -> int:
    """Which attempt the RayJob is on: KubeRay counts finished attempts in
    status.failed and status.succeeded; a live RayJob is on the next one."""
    failed = int(rayjob_status.get("failed") or 0)
    succeeded = int(rayjob_status.get("succeeded") or 0)
    finished = failed + succeeded
    return max(finished, 1) if terminal else finished + 1


# ----------------------------------------------------------------------------- status


def _progress_block(report: ProgressReport) -> dict:
    block: dict[str, Any] = {
        "step": report.step,
        "epoch": report.epoch,
        "percent": report.percent,
        "trialsCompleted": report.trials_completed,
        "trialsTotal": report.trials_total,
    }
    if report.total_steps is not None:
        block["totalSteps"] = report.total_steps
    return block


@dataclass(frozen=True)
class Verdict:
    """The phase a check decided on, with the reason and message that say why."""

    phase: Phase
    reason: str
    message: str
    retrying: bool = False


@dataclass
class _Draft:
    """The status body being built: what carries over from the old status, and the
    conditions so far. Every check reads it; `finish` writes the verdict into it."""

    old: dict
    generation: Optional[int]
    now: datetime
    status: dict
    conditions: list[dict]

    @classmethod
    def start(cls, old: dict, generation: Optional[int], now: datetime) -> "_Draft":
        carried = {key: old[key] for key in _CARRIED_FIELDS if old.get(key) not in (None, {}, [])}
        carried["observedGeneration"] = generation
        return cls(old, generation, now, carried, list(old.get("conditions") or []))

    def set(self, type_: str, status: str, reason: str, message: str) -> None:
        self.conditions = set_condition(self.conditions, type_, status, reason, message, self.now,
                                        self.generation)

    def finish(self, verdict: Verdict) -> dict:
        """The phase's condition True (and Retrying when retrying), every other one
        already present False; completionTime on entering a terminal phase."""
        for type_ in CONDITION_TYPES[1:]:
            active = _PHASE_CONDITION.get(verdict.phase) == type_ or (type_ == RETRYING and verdict.retrying)
            if active:
                self.set(type_, "True", verdict.reason, verdict.message)
            elif get_condition(self.conditions, type_) is not None:
                self.set(type_, "False", verdict.reason, "")
        if verdict.phase in TERMINAL_PHASES and not self.status.get("completionTime"):
            self.status["completionTime"] = format_time(self.now)
        self.status["phase"] = verdict.phase
        self.status["conditions"] = self.conditions
        self.status["message"] = verdict.message
        return self.status


# Status fields a new status keeps from the old one unless a check replaces them.
_CARRIED_FIELDS = ("rayJobName", "attempt", "startTime", "completionTime", "progress", "metrics",
                   "bestMetrics", "bestMetric", "bestTrial", "modelUri")


def compute_status(
    job_obj: dict,
    spec_or_error: Union[FineTuneJobSpec, str, Exception],
    rayjob: Optional[dict],
    progress: Optional[ProgressReport],
    admission: AdmissionDecision,
    now: datetime,
) -> dict:
    """The FineTuneJob's whole status body for these facts.

    `spec_or_error` is the validated spec, or the message (or exception) saying why
    the spec is invalid. `progress` None keeps the previously recorded progress (the
    submitter pod and its log may be gone). Never raises on odd RayJob content.

    A chain of named checks, in order; the first to decide gives the phase."""
    meta = job_obj.get("metadata") or {}
    old: dict = dict(job_obj.get("status") or {})
    # Terminal is terminal: nothing observed later reopens a finished job (its RayJob
    # may be deleted by TTL, its submitter log rotated). A later edit of a mutable
    # field, such as the TTL, only moves observedGeneration.
    if old.get("phase") in TERMINAL_PHASES:
        return {**old, "observedGeneration": meta.get("generation")}
    draft = _Draft.start(old, meta.get("generation"), now)
    if not isinstance(spec_or_error, FineTuneJobSpec):
        return draft.finish(_check_spec_invalid(draft, str(spec_or_error)))
    spec = spec_or_error
    rejected = _check_admission_rejected(draft, admission)
    if rejected is not None:
        return draft.finish(rejected)
    draft.set(ACCEPTED, "True", EventReason.ACCEPTED.value, "spec is valid and allowed in this namespace")
    if progress is not None:
        _record_progress(draft.status, spec, progress)
    if rayjob is None:
        return draft.finish(_check_rayjob_deleted(draft) or _check_suspended_by_spec(spec)
                            or _check_queued(admission) or _ADMITTED)
    outcome = _observe_rayjob(draft, rayjob, meta.get("name", ""))
    return draft.finish(_check_kueue_hold(spec, rayjob, outcome)
                        or _check_deadline(draft, spec, outcome)
                        or _rayjob_verdict(outcome, rayjob, draft.status, spec, progress))


_ADMITTED = Verdict(Phase.PENDING, EventReason.ADMITTED.value, "admitted; creating the RayJob")


def _check_spec_invalid(draft: _Draft, message: str) -> Verdict:
    """An invalid spec is not accepted, and fails the job."""
    draft.set(ACCEPTED, "False", EventReason.INVALID_SPEC.value, message)
    return Verdict(Phase.FAILED, EventReason.INVALID_SPEC.value, message)


def _check_admission_rejected(draft: _Draft, admission: AdmissionDecision) -> Optional[Verdict]:
    """A tenancy rule refused the job: not accepted, and failed with admission's reason."""
    if not admission.rejected:
        return None
    draft.set(ACCEPTED, "False", admission.reason, admission.message)
    return Verdict(Phase.FAILED, admission.reason, admission.message)


def _record_progress(status: dict, spec: FineTuneJobSpec, progress: ProgressReport) -> None:
    """The trainer's latest report: progress, metrics, the best so far, the model."""
    status["progress"] = _progress_block(progress)
    if progress.metrics:
        status["metrics"] = dict(progress.metrics)
    if progress.best_metrics:
        status["bestMetrics"] = dict(progress.best_metrics)
        metric, _ = selection_metric(spec)
        if metric in progress.best_metrics:
            status["bestMetric"] = f"{metric}={progress.best_metrics[metric]:.4g}"
    if progress.best_trial is not None:
        status["bestTrial"] = progress.best_trial.to_dict()
    if progress.model_uri and progress.state == "succeeded":
        status["modelUri"] = progress.model_uri


def _check_rayjob_deleted(draft: _Draft) -> Optional[Verdict]:
    """No RayJob, but one was seen running: someone deleted it (see the module doc)."""
    if not draft.old.get("startTime"):
        return None
    return Verdict(Phase.FAILED, EventReason.RAYJOB_MISSING.value,
                   f"RayJob {draft.old.get('rayJobName') or '?'} was deleted while the job was active; "
                   "re-create the FineTuneJob to resume from its last checkpoint")


def _check_suspended_by_spec(spec: FineTuneJobSpec) -> Optional[Verdict]:
    if not spec.scheduling.suspend:
        return None
    return Verdict(Phase.SUSPENDED, EventReason.SUSPENDED.value, "suspended by spec.scheduling.suspend")


def _check_queued(admission: AdmissionDecision) -> Optional[Verdict]:
    if not admission.queued:
        return None
    return Verdict(Phase.QUEUED, admission.reason, admission.message)


def _observe_rayjob(draft: _Draft, rayjob: dict, job_name: str) -> RayJobOutcome:
    """A RayJob exists: it is the source of truth for the run. Record its name, start,
    attempt and end, and map its state to ours."""
    status = draft.status
    rj_status = rayjob.get("status") or {}
    status["rayJobName"] = (rayjob.get("metadata") or {}).get("name") or naming.rayjob_name(job_name)
    status.setdefault("startTime", rj_status.get("startTime") or format_time(draft.now))
    outcome = map_rayjob_state(rj_status.get("jobDeploymentStatus"), rj_status.get("jobStatus"),
                               rj_status.get("reason"))
    if outcome.reason == "UnknownRayJobState" and draft.old.get("phase") in (Phase.RUNNING, Phase.SUSPENDED):
        # A KubeRay newer than this table: keep the last known phase, say why.
        outcome = RayJobOutcome(draft.old["phase"], outcome.reason)
    terminal = outcome.phase in TERMINAL_PHASES
    status["attempt"] = attempt_number(rj_status, terminal)
    if terminal and rj_status.get("endTime"):
        status.setdefault("completionTime", rj_status["endTime"])
    return outcome


def _check_kueue_hold(spec: FineTuneJobSpec, rayjob: dict, outcome: RayJobOutcome) -> Optional[Verdict]:
    """A Kueue job whose RayJob Kueue keeps suspended (the user did not ask) is queued."""
    held = (spec.scheduling.queue_name and not spec.scheduling.suspend
            and (rayjob.get("spec") or {}).get("suspend") and outcome.phase in (Phase.PENDING, Phase.SUSPENDED))
    if not held:
        return None
    return Verdict(Phase.QUEUED, "WaitingForKueue",
                   f"waiting for Kueue to admit the job from LocalQueue {spec.scheduling.queue_name}")


def _check_deadline(draft: _Draft, spec: FineTuneJobSpec, outcome: RayJobOutcome) -> Optional[Verdict]:
    """A live, unsuspended job past activeDeadlineSeconds since its start fails (the
    backstop described in the module doc)."""
    deadline = spec.scheduling.active_deadline_seconds
    started = parse_time(draft.status.get("startTime"))
    if (not deadline or not started or outcome.phase in TERMINAL_PHASES or outcome.phase == Phase.SUSPENDED
            or (draft.now - started).total_seconds() <= deadline):
        return None
    return Verdict(Phase.FAILED, EventReason.DEADLINE_EXCEEDED.value,
                   f"job ran longer than scheduling.activeDeadlineSeconds ({deadline}s)")


def _rayjob_verdict(outcome: RayJobOutcome, rayjob: dict, status: dict, spec: FineTuneJobSpec,
                    progress: Optional[ProgressReport]) -> Verdict:
    """No check decided: the RayJob's own state, with a message for people."""
    message = _rayjob_message(outcome, rayjob.get("status") or {}, status["rayJobName"], status["attempt"],
                              spec, progress)
    return Verdict(outcome.phase, outcome.reason, message, outcome.retrying)


def _rayjob_message(outcome: RayJobOutcome, rj_status: dict, rj_name: str, attempt: int,
                    spec: FineTuneJobSpec, progress: Optional[ProgressReport]) -> str:
    kuberay = rj_status.get("message") or ""
    if outcome.phase == Phase.FAILED:
        return f"RayJob {rj_name} failed ({outcome.reason})" + (f": {kuberay}" if kuberay else "")
    if outcome.phase == Phase.SUCCEEDED:
        return progress.message if progress and progress.message else f"RayJob {rj_name} succeeded"
    if outcome.retrying:
        return f"attempt {attempt} of {spec.scheduling.backoff_limit + 1} starting on a new Ray cluster"
    if outcome.phase == Phase.RUNNING and progress is not None:
        return progress.message or f"training: {progress.percent:.0f}% done"
    if outcome.reason == "UnknownRayJobState":
        state = rj_status.get("jobDeploymentStatus")
        return f"RayJob {rj_name} is in a state this operator does not know: {state!r}"
    return f"RayJob {rj_name}: {outcome.reason}" + (f" ({kuberay})" if kuberay else "")


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def status_changed(old: Optional[dict], new: dict) -> bool:
    """Whether writing `new` would change the stored status. Null fields count as
    absent, since a merge patch treats them the same."""
    return _prune(old or {}) != _prune(new)


def failed_reason(status: dict) -> Optional[str]:
    """The reason of the status's Failed condition, if it has one."""
    failed = get_condition(status.get("conditions") or [], FAILED)
    return failed.get("reason") if failed else None
