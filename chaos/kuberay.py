"""Plays KubeRay for every RayJob the operator creates, on a thread of its own.

There is no KubeRay controller here, so the player moves each RayJob through the
states KubeRay v1.7 gives it, through the status subresource as KubeRay writes it:
Initializing, Running, sometimes Retrying and Running again, then Complete with
SUCCEEDED or FAILED. Each RayJob's plan (its states, how long it stays in each, how
it ends) is drawn from a generator seeded with the run's seed and the RayJob's name,
so the same seed gives every job the same life however the kills fall.

It also keeps the largest number of unfinished RayJobs it saw per namespace, which
the queue must hold at or under the concurrency limit.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from chaos.client import RAYJOBS_API, ChaosApi, JSON
from finetune_operator import naming


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Plan:
    """One RayJob's life: (jobDeploymentStatus, seconds before it) steps, and the end."""

    steps: list[tuple[str, float]]
    succeeds: bool
    done: int = 0
    next_at: float = 0.0
    retries: int = 0

    @property
    def finished(self) -> bool:
        return self.done >= len(self.steps)

    @property
    def expected_phase(self) -> str:
        return "Succeeded" if self.succeeds else "Failed"


def draw_plan(seed: int, key: str, pace: float) -> Plan:
    rng = random.Random(f"{seed}:{key}")
    steps = [("Initializing", rng.uniform(0.2, 2.0) * pace), ("Running", rng.uniform(0.5, 3.0) * pace)]
    if rng.random() < 0.2:
        steps += [("Retrying", rng.uniform(0.5, 2.0) * pace), ("Running", rng.uniform(0.5, 2.0) * pace)]
    steps.append(("Complete", rng.uniform(1.0, 6.0) * pace))
    return Plan(steps, succeeds=rng.random() < 0.8)


@dataclass(eq=False)
class KubeRayPlayer(threading.Thread):
    api: ChaosApi
    namespaces: set[str]
    seed: int
    pace: float = 1.0
    tick: float = 0.2
    plans: dict[str, Plan] = field(default_factory=dict)
    uids: dict[str, str] = field(default_factory=dict)
    max_active: dict[str, int] = field(default_factory=dict)
    transitions: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True, name="kuberay-player")
        self.stopped = threading.Event()
        self.api = self.api.clone()

    def run(self) -> None:
        while not self.stopped.wait(self.tick):
            try:
                self.step()
            except Exception as err:  # a failed list is retried next tick; keep the first few
                if len(self.errors) < 20:
                    self.errors.append(f"{type(err).__name__}: {err}")

    def step(self) -> None:
        selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY_VALUE}"
        rayjobs = [r for r in self.api.items(RAYJOBS_API, "rayjobs", labelSelector=selector)
                   if r["metadata"]["namespace"] in self.namespaces]
        now = time.monotonic()
        active: dict[str, int] = {}
        for rayjob in rayjobs:
            meta = rayjob["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            plan = self.plans.get(key)
            if plan is None or self.uids.get(key) != meta["uid"]:
                plan = self.plans[key] = draw_plan(self.seed, key, self.pace)
                plan.next_at = now + plan.steps[0][1]
                self.uids[key] = meta["uid"]
            if not plan.finished and now >= plan.next_at:
                self._advance(rayjob, plan, now)
            if not plan.finished:
                active[meta["namespace"]] = active.get(meta["namespace"], 0) + 1
        for namespace, count in active.items():
            self.max_active[namespace] = max(self.max_active.get(namespace, 0), count)

    def _advance(self, rayjob: JSON, plan: Plan, now: float) -> None:
        meta = rayjob["metadata"]
        state = plan.steps[plan.done][0]
        status: JSON = {"jobDeploymentStatus": state}
        if state == "Initializing":
            status["rayClusterName"] = f"{meta['name']}-raycluster"
        elif state == "Running":
            status.update({"jobStatus": "RUNNING", "jobId": f"{meta['name']}-{plan.retries}"})
            if plan.retries == 0:
                status["startTime"] = _now()
        elif state == "Retrying":
            plan.retries += 1
            status.update({"failed": plan.retries, "jobStatus": "FAILED"})
        else:
            status.update({"jobStatus": "SUCCEEDED" if plan.succeeds else "FAILED", "endTime": _now(),
                           "succeeded" if plan.succeeds else "failed": plan.retries + (0 if plan.succeeds else 1)})
            if plan.succeeds and plan.retries:
                status["failed"] = plan.retries
        response = self.api.request("PATCH", f"/apis/{RAYJOBS_API}/namespaces/{meta['namespace']}/rayjobs/"
                                    f"{meta['name']}/status", {"status": status},
                                    content_type="application/merge-patch+json")
        if response.status_code == 404:
            return  # gone (its job deleted): nothing to play
        self.api.ok(response)
        plan.done += 1
        self.transitions += 1
        if not plan.finished:
            plan.next_at = now + plan.steps[plan.done][1]

    def finished(self) -> int:
        return sum(1 for plan in self.plans.values() if plan.finished)

    def expected(self, key: str) -> Optional[str]:
        plan = self.plans.get(key)
        return plan.expected_phase if plan is not None and plan.finished else None

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)
        self.api.close()
