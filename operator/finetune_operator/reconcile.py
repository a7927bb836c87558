"""The reconcile loop: one fixed skeleton, level-based and idempotent.

    fetch -> deletion? -> validate (pure) -> admit (pure + Secret lookup) ->
    record status.rayJobName -> create ConfigMap and RayJob if absent (adopt on 409) ->
    refuse forbidden spec changes -> patch the RayJob's mutable fields -> observe RayJob and the
    submitter's log -> compute_status (pure) -> write status once, only if changed ->
    Events on phase changes -> metrics

Every step reads the world afresh and acts on the difference, so running it twice, or
after an operator restart at any point, does the same as running it once. Child names
are deterministic, and the RayJob's name is written to status before it is created:
a restart between the two finds the name, gets a 409 (or nothing) and adopts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Optional

import kopf

from finetune_operator import admission, builders, events, naming, output_cleanup, status as status_mod
from finetune_operator.admission import AdmissionDecision, AdmissionState, JobSummary
from finetune_operator.admitter import Admitter
from finetune_operator.api import API_VERSION, KIND, TERMINAL_PHASES, FineTuneJobSpec, Phase
from finetune_operator.cluster_defaults import rayjob_ttl
from finetune_operator.events import EventReason
from finetune_operator.kube import ApiError, Conflict, KubeApi, NotFound
from finetune_operator.manifests import ManifestError, parse_job
from finetune_operator.metrics import OperatorMetrics
from finetune_operator.settings import Settings
from finetune_trainer.api import ProgressReport, latest_progress

LOG_TAIL_LINES = 200
# RayJob states in which the driver has run, so its log may hold progress.
_LOG_STATES = frozenset({"Running", "Retrying", "Complete", "Failed", "Suspending", "Suspended"})

# Reconciles running at once (controller-runtime's MaxConcurrentReconciles); the rest
# wait their turn. A reconcile mostly waits on the API server, so many run together;
# kube.MAX_IN_FLIGHT bounds the requests they make. Measured with 1,000 new jobs on
# the test emulator: 32 gave 14 jobs/s, 100 gave 40, 250 gave 47.
MAX_CONCURRENT_RECONCILES = 250

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _manifest_view(job: dict) -> dict:
    """The user's manifest part of a stored object, for the shared validator."""
    meta = job.get("metadata") or {}
    return {
        "apiVersion": job.get("apiVersion", API_VERSION),
        "kind": job.get("kind", KIND),
        "metadata": {key: meta[key] for key in ("name", "namespace", "labels", "annotations") if key in meta},
        "spec": job.get("spec") or {},
    }


def _status_patch(old: dict, new: dict) -> dict:
    """A merge patch turning `old` into `new` (removed keys become null)."""
    patch = {key: value for key, value in new.items() if old.get(key) != value}
    patch.update({key: None for key in old if key not in new})
    return patch


def _is_ours(obj: dict, uid: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(naming.JOB_UID_LABEL) == uid and labels.get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY_VALUE


class _JobGone(Exception):
    """The FineTuneJob was deleted while its reconcile ran (a 404 on its status)."""


class Controller:
    """Reconciles FineTuneJobs; one per operator process."""

    def __init__(self, kube: KubeApi, settings: Settings, metrics: Optional[OperatorMetrics] = None,
                 max_concurrent_reconciles: int = MAX_CONCURRENT_RECONCILES) -> None:
        self.kube = kube
        self._workers = asyncio.Semaphore(max_concurrent_reconciles)
        self.settings = settings
        self.metrics = metrics or OperatorMetrics()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.admitter = Admitter(kube, settings, self.metrics)
        # When each job was last reconciled (monotonic seconds), for the resync timer.
        self._last_reconciled: dict[tuple[str, str], float] = {}

    def resync_due(self, namespace: str, name: str, phase: Optional[str], interval: float) -> bool:
        """Whether the periodic resync should reconcile this job now.

        Running jobs (progress lives in a log, which raises no watch events) and queued
        jobs (a slot or a Secret may have appeared) every interval; other live jobs,
        whose every change arrives as a watch event, only every 4 intervals as a
        backstop. With 1,000 jobs this keeps the steady load on the API server low."""
        last = self._last_reconciled.get((namespace, name))
        if last is None:
            return False  # its create or resume handler has not run yet; it will
        if phase in (Phase.RUNNING, Phase.QUEUED):
            return True
        return time.monotonic() - last >= 4 * interval - 0.5

    # ----------------------------------------------------------------- entry point

    async def reconcile(self, namespace: str, name: str, *, queue: list[JobSummary],
                        logger: Any = None, body: Optional[dict] = None) -> None:
        """Bring one FineTuneJob's world in line with its spec. API errors become
        kopf.TemporaryError, so kopf retries with back-off."""
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        async with lock, self._workers:
            self._last_reconciled[(namespace, name)] = time.monotonic()
            try:
                with self.metrics.reconciling():
                    await self._reconcile(namespace, name, queue, logger or log, body)
            except _JobGone:  # deleted while we worked: nothing left to do, and no error
                log.debug("FineTuneJob %s/%s was deleted during its reconcile", namespace, name)
            except ApiError as err:
                raise kopf.TemporaryError(f"Kubernetes API error for {namespace}/{name}: {err}", delay=2) from err

    # -------------------------------------------------------------------- skeleton

    async def _reconcile(self, namespace: str, name: str, queue: list[JobSummary], logger: Any,
                         body: Optional[dict] = None) -> None:
        job = body if body is not None else await self.kube.get_finetunejob(namespace, name)
        if job is None:
            self._forget(namespace, name)
            return
        meta = job["metadata"]
        if meta.get("deletionTimestamp"):
            self._forget(namespace, name)
            return  # children go by ownerReference GC; outputs via the delete handler
        old_status: dict = dict(job.get("status") or {})
        if old_status.get("phase") in TERMINAL_PHASES:
            self._release(namespace, name)
            return
        now = _now()

        spec, invalid = self._validate(job, namespace)
        rayjob_name = old_status.get("rayJobName") or naming.rayjob_name(name)
        claimed = bool(old_status.get("rayJobName"))
        rayjob = await self.kube.get_rayjob(namespace, rayjob_name) if claimed else None

        if invalid is not None and rayjob is None:
            await self._write(job, status_mod.compute_status(job, invalid, None, None, admission.ADMITTED, now),
                              logger, detail_reason=EventReason.INVALID_SPEC)
            return
        if rayjob is not None and invalid is not None:
            # CRD validation normally stops this. The running job carries on with the
            # spec it was accepted with; the change is refused below like any other.
            spec = self._accepted_spec(rayjob)
            if spec is None:
                await self._refuse(job, [f"spec is invalid: {invalid}"], logger)
                return
        assert spec is not None

        if not claimed:
            decision = await self.admitter.decide(job, spec, queue)
            new = status_mod.compute_status(job, spec, None, None, decision, now)
            if decision.admitted and not spec.scheduling.suspend:
                new["rayJobName"] = rayjob_name  # recorded BEFORE the RayJob exists
                self.admitter.claim(namespace, name)
            # Only if unchanged since read: a replica that claimed it since must not be undone.
            try:
                job = await self._write(job, new, logger, detail_reason=_rejection_reason(decision),
                                        unchanged_since_read=True)
            except Conflict:
                self._release(namespace, name)  # not claimed after all; the retry decides again
                raise
            if not new.get("rayJobName"):
                return
            old_status = dict(job.get("status") or {})

        if rayjob is None:
            if old_status.get("startTime"):
                # Seen running, now gone: compute_status fails it as RayJobMissing.
                await self._write(job, status_mod.compute_status(job, spec, None, None, admission.ADMITTED, now),
                                  logger, detail_reason=EventReason.RAYJOB_MISSING)
                return
            rayjob = await self._create_children(job, spec, rayjob_name, logger)
            if rayjob is None:
                return

        if not _is_ours(rayjob, meta["uid"]):
            await self._fail_foreign(job, spec, rayjob_name, now, logger)
            return

        refused = self._forbidden_changes(rayjob, job)
        if refused:
            await self._refuse(job, refused, logger, write=False)
        await self._apply_mutables(job, spec, rayjob, logger)
        progress = await self._read_progress(namespace, rayjob)
        new = status_mod.compute_status(job, spec, rayjob, progress, admission.ADMITTED, now)
        if refused:
            new["message"] = events.spec_change_refused_message(refused)
        deadline = EventReason.DEADLINE_EXCEEDED.value
        if new.get("phase") == Phase.FAILED and new.get("conditions") and status_mod.failed_reason(new) == deadline:
            await self.kube.delete_rayjob(namespace, rayjob_name)
            self.metrics.rayjobs_deleted.labels(namespace=namespace).inc()
        await self._write(job, new, logger)

    # ----------------------------------------------------------------------- steps

    def _validate(self, job: dict, namespace: str) -> tuple[Optional[FineTuneJobSpec], Optional[str]]:
        """The validated spec, or the message saying why it is invalid (the same
        validator `finetune validate` uses)."""
        rejection = admission.check_secret_ref(namespace, job.get("spec") or {})
        if rejection is not None:
            return None, rejection.message
        try:
            return parse_job(_manifest_view(job), source="FineTuneJob").spec, None
        except ManifestError as err:
            lines = [f"{p.path}: {p.message}" if p.path else p.message for p in err.problems]
            return None, "; ".join(lines)

    async def _create_children(self, job: dict, spec: FineTuneJobSpec, rayjob_name: str,
                               logger: Any) -> Optional[dict]:
        """Create the ConfigMap, then the RayJob; adopt either on 409 if it is ours."""
        meta = job["metadata"]
        namespace = meta["namespace"]
        configmap = builders.build_configmap(job, spec, self.settings)
        try:
            await self.kube.create_configmap(namespace, configmap)
        except Conflict:
            existing = await self.kube.get_configmap(namespace, configmap["metadata"]["name"])
            if existing is None:  # deleted since, or a 409 of another kind: no RayJob without it
                raise kopf.TemporaryError(f"ConfigMap {configmap['metadata']['name']} conflicted and vanished; "
                                          "retrying", delay=1)
            if not _is_ours(existing, meta["uid"]):
                await self._fail_foreign(job, spec, configmap["metadata"]["name"], _now(), logger, kind="ConfigMap")
                return None
        body = builders.build_rayjob(job, spec, self.settings)
        body["metadata"].setdefault("annotations", {})[naming.ACCEPTED_SPEC_ANNOTATION] = json.dumps(
            job.get("spec") or {}, sort_keys=True, separators=(",", ":"))
        try:
            created = await self.kube.create_rayjob(namespace, body)
        except Conflict:
            existing = await self.kube.get_rayjob(namespace, rayjob_name)
            if existing is None:
                raise kopf.TemporaryError(f"RayJob {rayjob_name} conflicted and vanished; retrying", delay=1)
            logger.info("RayJob %s already exists; adopting it", rayjob_name)
            return existing
        self.metrics.rayjobs_created.labels(namespace=namespace).inc()
        attempt = (job.get("status") or {}).get("attempt") or 1
        self._event(job, EventReason.RAYJOB_CREATED, events.rayjob_created_message(rayjob_name, attempt))
        return created

    def _forbidden_changes(self, rayjob: dict, job: dict) -> list[str]:
        old_spec = naming.accepted_spec(rayjob)
        if old_spec is None:
            return []  # adopted from an older operator: nothing to compare with
        return admission.forbidden_changes(old_spec, job.get("spec") or {})

    async def _apply_mutables(self, job: dict, spec: FineTuneJobSpec, rayjob: dict, logger: Any) -> None:
        """Bring the live RayJob's mutable fields (suspend, TTL, deadline) in line with
        the spec: one patch, only when one differs, and an Event naming each change.
        KubeRay tears a suspended job's Ray cluster down and resumes from the last
        checkpoint; Kueue owns suspend for its jobs, except that a user's suspend is
        passed on (builders.build_rayjob_patch decides)."""
        patch = builders.build_rayjob_patch(rayjob, spec, self.settings)
        if patch is None:
            return
        name = rayjob["metadata"]["name"]
        before = rayjob.get("spec") or {}
        changes = {key: (before.get(key), value) for key, value in patch["spec"].items()}
        if "deletionStrategy" in changes:  # named as the user wrote it: the TTL
            del changes["deletionStrategy"]
            changes["ttlSecondsAfterFinished"] = (rayjob_ttl(before), rayjob_ttl(patch["spec"]))
        try:
            patched = await self.kube.patch_rayjob(job["metadata"]["namespace"], name, patch)
        except NotFound:
            # Deleted since we read it: no error; its DELETED event reconciles again.
            log.debug("RayJob %s/%s went away before its patch", job["metadata"]["namespace"], name)
            return
        rayjob.clear()
        rayjob.update(patched)
        if "suspend" in changes:
            reason = EventReason.SUSPENDED if changes["suspend"][1] else EventReason.RESUMED
        else:
            reason = EventReason.RAYJOB_UPDATED
        self._event(job, reason, events.rayjob_updated_message(name, changes))

    async def _read_progress(self, namespace: str, rayjob: dict) -> Optional[ProgressReport]:
        """The latest progress line of the submitter pod's log, if it has one."""
        rj_status = rayjob.get("status") or {}
        if rj_status.get("jobDeploymentStatus") not in _LOG_STATES:
            return None  # no driver yet, so no submitter log worth a request
        name = rayjob["metadata"]["name"]
        pods = await self.kube.list_pods(namespace, f"{naming.SUBMITTER_POD_LABEL}={name}")
        if not pods:
            return None
        newest = max(pods, key=lambda pod: (pod.get("metadata") or {}).get("creationTimestamp") or "")
        text = await self.kube.read_pod_log(namespace, newest["metadata"]["name"], LOG_TAIL_LINES)
        return latest_progress(text.splitlines()) if text else None

    def _accepted_spec(self, rayjob: dict) -> Optional[FineTuneJobSpec]:
        """The spec the RayJob was built from, validated again, or None."""
        accepted = naming.accepted_spec(rayjob)
        try:
            return FineTuneJobSpec.model_validate(accepted) if accepted is not None else None
        except ValueError:
            return None

    async def _refuse(self, job: dict, paths: list[str], logger: Any, write: bool = True) -> None:
        """Say (once per distinct refusal) that a spec change is not applied. The
        status message is written here only when no full status write follows."""
        message = events.spec_change_refused_message(paths)
        old = job.get("status") or {}
        if old.get("message") == message:
            return
        self._event(job, EventReason.SPEC_CHANGE_REFUSED, message)
        if write:
            try:
                await self.kube.patch_finetunejob_status(
                    job["metadata"]["namespace"], job["metadata"]["name"], {"message": message})
            except NotFound:
                raise _JobGone() from None

    async def _fail_foreign(self, job: dict, spec: FineTuneJobSpec, child: str, now: datetime, logger: Any,
                            kind: str = "RayJob") -> None:
        message = (f"a {kind} named {child} already exists in namespace {job['metadata']['namespace']} "
                   "and is not owned by this FineTuneJob; delete it or rename the job")
        decision = AdmissionDecision(AdmissionState.REJECTED, EventReason.RECONCILE_ERROR.value, message)
        await self._write(job, status_mod.compute_status(job, spec, None, None, decision, now), logger,
                          detail_reason=EventReason.RECONCILE_ERROR)

    # ---------------------------------------------------------------- status, events

    async def _write(self, job: dict, new: dict, logger: Any, detail_reason: Optional[EventReason] = None,
                     unchanged_since_read: bool = False) -> dict:
        """Write the status if it changed; post the Events the change calls for. With
        `unchanged_since_read`, a job changed since `job` was read is a Conflict."""
        old = dict(job.get("status") or {})
        if not status_mod.status_changed(old, new):
            return job
        meta = job["metadata"]
        patch = _status_patch(old, new)
        version = meta.get("resourceVersion") if unchanged_since_read else None
        try:
            updated = await self.kube.patch_finetunejob_status(meta["namespace"], meta["name"], patch, version)
        except NotFound:
            raise _JobGone() from None
        for reason, message in events.status_change_events(old, new, detail_reason):
            self._event(job, reason, message)
        old_phase, new_phase = old.get("phase"), new.get("phase")
        if new_phase in TERMINAL_PHASES and old_phase not in TERMINAL_PHASES:
            started = status_mod.parse_time(new.get("startTime"))
            ended = status_mod.parse_time(new.get("completionTime"))
            if started and ended:
                self.metrics.job_finished(meta["namespace"], new_phase, (ended - started).total_seconds())
            self._release(meta["namespace"], meta["name"])
        return updated

    def _event(self, job: dict, reason: EventReason, message: str) -> None:
        kopf.event(job, type=reason.event_type, reason=reason.value, message=events.clip(message))

    # ------------------------------------------------------------------ bookkeeping

    def _release(self, namespace: str, name: str) -> None:
        self.admitter.release(namespace, name)

    def _forget(self, namespace: str, name: str) -> None:
        self._release(namespace, name)
        self._locks.pop((namespace, name), None)
        self._last_reconciled.pop((namespace, name), None)

    def update_phase_counts(self, counts: dict[tuple[str, str], int]) -> None:
        self.metrics.set_job_counts(counts)

    # -------------------------------------------------------------------- deletion

    async def cleanup_outputs(self, job: dict, logger: Any) -> None:
        """outputPolicy Delete: delete the job's outputs before its finalizer goes."""
        await output_cleanup.delete_outputs(self.kube, self.settings, job)


def _rejection_reason(decision: AdmissionDecision) -> Optional[EventReason]:
    """The Event reason for a decision that does not admit the job (None for plain
    queueing, whose Event is the phase's own)."""
    if decision.admitted or decision.reason == EventReason.QUEUED.value:
        return None
    try:
        return EventReason(decision.reason)
    except ValueError:
        return None
