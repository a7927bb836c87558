"""The operator's Prometheus metrics, in a registry of their own.

A private CollectorRegistry keeps tests independent (each builds a fresh
`OperatorMetrics`) and keeps the process's default collectors out unless the runtime
adds them on purpose. `METRIC_NAMES` is the contract with dashboards and alert rules:
their tests check every name they use is in it.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from finetune_operator.api import PHASES

PREFIX = "finetune_operator_"

JOBS = PREFIX + "jobs"
JOB_DURATION = PREFIX + "job_duration_seconds"
RECONCILE_DURATION = PREFIX + "reconcile_duration_seconds"
RECONCILE_ERRORS = PREFIX + "reconcile_errors_total"
QUEUE_DEPTH = PREFIX + "queue_depth"
RAYJOBS_CREATED = PREFIX + "rayjobs_created_total"
RAYJOBS_DELETED = PREFIX + "rayjobs_deleted_total"

# Names as they appear in the exposition (counters with their _total suffix;
# histograms also expose _bucket, _sum and _count series).
METRIC_NAMES: tuple[str, ...] = (
    JOBS, JOB_DURATION, RECONCILE_DURATION, RECONCILE_ERRORS, QUEUE_DEPTH, RAYJOBS_CREATED, RAYJOBS_DELETED,
)

# Fine-tunes run minutes to days.
JOB_DURATION_BUCKETS = (60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 24 * 3600, 72 * 3600)
# A reconcile is a handful of API calls.
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def _base(name: str) -> str:
    """prometheus-client adds `_total` to counters itself."""
    return name[: -len("_total")] if name.endswith("_total") else name


class OperatorMetrics:
    """Every metric the operator exports, bound to one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.jobs = Gauge(JOBS, "FineTuneJobs by namespace and phase.", ["namespace", "phase"],
                          registry=self.registry)
        self.job_duration = Histogram(
            JOB_DURATION, "Seconds from a job's start to its end, by outcome.", ["namespace", "phase"],
            buckets=JOB_DURATION_BUCKETS, registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            RECONCILE_DURATION, "Seconds one reconcile of a FineTuneJob took.",
            buckets=RECONCILE_BUCKETS, registry=self.registry,
        )
        self.reconcile_errors = Counter(
            _base(RECONCILE_ERRORS), "Reconciles that ended in an error, by reason.", ["reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(QUEUE_DEPTH, "Jobs waiting in the operator's queue, by namespace.",
                                 ["namespace"], registry=self.registry)
        self.rayjobs_created = Counter(_base(RAYJOBS_CREATED), "RayJobs the operator created.",
                                       ["namespace"], registry=self.registry)
        self.rayjobs_deleted = Counter(_base(RAYJOBS_DELETED), "RayJobs the operator deleted.",
                                       ["namespace"], registry=self.registry)

    def set_job_counts(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace the jobs gauge with `{(namespace, phase): count}`; every phase of a
        namespace present is written, zeros included, so a phase that empties drops
        to 0 instead of keeping its last value."""
        self.jobs.clear()
        namespaces = {namespace for namespace, _ in counts}
        for namespace in namespaces:
            for phase in PHASES:
                self.jobs.labels(namespace=namespace, phase=phase).set(counts.get((namespace, phase), 0))

    def set_queue_depth(self, namespace: str, depth: int) -> None:
        self.queue_depth.labels(namespace=namespace).set(depth)

    def job_finished(self, namespace: str, phase: str, seconds: float) -> None:
        self.job_duration.labels(namespace=namespace, phase=phase).observe(max(seconds, 0.0))

    @contextmanager
    def reconciling(self) -> Iterator[None]:
        """Time one reconcile; an exception counts as an error with its class name as
        reason and propagates."""
        started = time.perf_counter()
        try:
            yield
        except Exception as err:
            self.reconcile_errors.labels(reason=type(err).__name__).inc()
            raise
        finally:
            self.reconcile_duration.observe(time.perf_counter() - started)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (what /metrics serves)."""
        return generate_latest(self.registry)
