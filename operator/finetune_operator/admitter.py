"""Admission in one operator process: the pure rules of `admission`, the Secret's
existence, and the namespace's queue as this process sees it.

The queue comes from kopf's index, which follows the watch stream and may lag behind
what this process itself has just admitted; the admitter keeps those claims until the
job ends or goes, so two jobs never take the same last slot.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from finetune_operator import admission, events
from finetune_operator.admission import AdmissionDecision, AdmissionState, JobSummary
from finetune_operator.api import FineTuneJobSpec
from finetune_operator.events import EventReason
from finetune_operator.kube import KubeApi
from finetune_operator.metrics import OperatorMetrics
from finetune_operator.settings import Settings


class Admitter:
    """Decides whether a new job may start now; one per Controller."""

    def __init__(self, kube: KubeApi, settings: Settings, metrics: OperatorMetrics) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self._namespace_locks: dict[str, asyncio.Lock] = {}
        # Jobs this process admitted whose index entry may still lag behind.
        self._claims: dict[str, set[str]] = {}

    def claim(self, namespace: str, name: str) -> None:
        """The job was admitted (its RayJob name is recorded): it holds a slot."""
        self._claims.setdefault(namespace, set()).add(name)

    def release(self, namespace: str, name: str) -> None:
        """The job ended or went: its slot is free."""
        self._claims.get(namespace, set()).discard(name)

    async def decide(self, job: dict, spec: FineTuneJobSpec, queue: list[JobSummary]) -> AdmissionDecision:
        """Tenancy rules, the Secret's existence, then the namespace's queue."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        rejected = admission.check_storage(namespace, spec, self.settings) \
            or admission.check_resources(namespace, spec, self.settings)
        if rejected is not None:
            return rejected
        ref = spec.output.secret_ref
        if ref is not None and not await self.kube.secret_exists(namespace, ref.name):
            # Not final: the Secret may be created after the job; the timer re-checks.
            return AdmissionDecision(AdmissionState.QUEUED, EventReason.SECRET_NOT_FOUND.value,
                                     events.secret_not_found_message(ref.name, namespace))
        if spec.scheduling.queue_name:
            return admission.KUEUE_ADMITS
        lock = self._namespace_locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            summaries = self._with_claims(namespace, queue, job)
            decisions = admission.admit(summaries, self.settings.limit_for(namespace))
            decision = decisions.get(name, admission.ADMITTED)
            # The queue only changes when a waiting job is decided, so this is where
            # its depth is measured (admitted jobs leave it: one fewer).
            depth = admission.queue_depth(decisions)
            self.metrics.set_queue_depth(namespace, depth)
            return decision

    def _with_claims(self, namespace: str, queue: list[JobSummary], job: Optional[dict] = None) -> list[JobSummary]:
        """The index's view of the namespace, corrected by what this process knows
        that the watch stream may not have delivered yet (its own claims, this job)."""
        claims = self._claims.get(namespace, set())
        by_name = {summary.name: summary for summary in queue}
        if job is not None:
            by_name[job["metadata"]["name"]] = admission.summarize(job, self.settings)
        for claimed in claims:
            summary = by_name.get(claimed)
            if summary is not None and not summary.holds_slot:
                by_name[claimed] = JobSummary(summary.name, summary.created, summary.priority,
                                              holds_slot=True, waiting=False, kueue=summary.kueue)
        return list(by_name.values())
