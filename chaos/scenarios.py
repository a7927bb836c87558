"""The chaos loops. Each takes a started real API server, a seed and its sizes, and
returns a `Result` with its counts and the `Verdict` of the invariants.

- `operator_kill`: one operator, SIGKILLed at seeded moments (during start-up, or a
  seeded time after it became healthy) and restarted each time, while the jobs are
  created in batches between kills and the KubeRay player moves their RayJobs on.
- `two_replicas`: two operators at once, one with no peering and one whose peering
  object is its own (a misconfigured name), so both work every job; one of them is
  killed and restarted at seeded moments.
- `api_faults` (see chaos.proxy): one operator talking to the server through a proxy
  that fails a seeded share of its requests.

Each run works in namespaces of its own (`chaos-<scenario>-<run>-<i>`), so runs can
share one server.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import yaml

from chaos.client import JOBS_API, ChaosApi, operator_requests
from chaos.invariants import Verdict, judge
from chaos.kuberay import KubeRayPlayer
from chaos.operators import OperatorProcess
from chaos.proxy import FaultProxy
from chaos.recorder import Recorder
from finetune_operator.api import TERMINAL_PHASES
from tests.support.jobs import runnable_job
from tests.support.real_kube import ADMIN, RealKube

NAMESPACES = 5


@dataclass
class Result:
    scenario: str
    seed: int
    iterations: int
    faults: int
    verdict: Verdict
    recovery_max_s: float
    converge_s: float
    crashed: int = 0
    namespaces: list[str] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Run:
    """The namespaces, recorder, KubeRay player and jobs of one scenario run."""

    def __init__(self, server: RealKube, workdir: Path, scenario: str, seed: int, jobs: int,
                 limit: int, pace: float) -> None:
        self.server = server
        self.workdir = workdir
        self.api = ChaosApi(server)
        tag = uuid.uuid4().hex[:6]
        self.namespaces = [f"chaos-{scenario}-{tag}-{i}" for i in range(NAMESPACES)]
        for namespace in self.namespaces:
            self.api.create_namespace(namespace)
        self.jobs = jobs
        self.limit = limit
        self.seed = seed
        self.created: dict[str, str] = {}
        self.recorder = Recorder(self.api, set(self.namespaces)).start()
        self.player = KubeRayPlayer(self.api, set(self.namespaces), seed, pace=pace)
        self.player.start()
        self.audit_offset = server.audit_log.stat().st_size if server.audit_log.exists() else 0
        self.kubeconfig = server.write_kubeconfig(ADMIN)

    def operator(self, name: str, flags: list[str]) -> OperatorProcess:
        env = {"FINETUNE_CONCURRENCY_LIMIT": str(self.limit)}
        return OperatorProcess(self.kubeconfig, self.workdir / f"{name}.log", self.namespaces, flags, env)

    def create_up_to(self, count: int) -> None:
        """Create jobs until `count` exist (job i goes to namespace i mod 5)."""
        while len(self.created) < min(count, self.jobs):
            index = len(self.created)
            namespace = self.namespaces[index % NAMESPACES]
            name = f"job-{index}"
            body = self.api.create(JOBS_API, "finetunejobs", namespace, runnable_job(name, namespace))
            self.created[f"{namespace}/{name}"] = body["metadata"]["uid"]

    def final_jobs(self) -> dict[str, dict]:
        jobs: dict[str, dict] = {}
        for namespace in self.namespaces:
            for job in self.api.items(JOBS_API, "finetunejobs", namespace):
                jobs[f"{namespace}/{job['metadata']['name']}"] = job
        return jobs

    def converged(self) -> bool:
        """Every job created, every RayJob played to its end, every job terminal."""
        if len(self.created) < self.jobs or self.player.finished() < self.jobs:
            return False
        jobs = self.final_jobs()
        return all(((jobs.get(key) or {}).get("status") or {}).get("phase") in TERMINAL_PHASES
                   for key in self.created)

    def wait_converged(self, timeout: float, alive: Callable[[], bool]) -> float:
        started = time.monotonic()
        while not self.converged():
            if time.monotonic() - started > timeout:
                return math.inf
            if not alive():
                raise RuntimeError("the operator exited while the run converged")
            time.sleep(0.5)
        return time.monotonic() - started

    def finish(self, result: Result) -> Result:
        result.namespaces = list(self.namespaces)
        self.player.stop()
        # The recorder has the last writes once its streams have passed them: compare
        # with a final list before stopping it.
        final = self.final_jobs()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
                max((rv for rv, _ in self.recorder.phases.get(key, [])), default=0)
                < int(job["metadata"]["resourceVersion"]) for key, job in final.items()):
            time.sleep(0.1)
        self.recorder.stop()
        result.verdict = judge(self.created, final, self.recorder, self.player, self.limit)
        result.verdict.findings += [f"recorder: {e}" for e in self.recorder.errors]
        result.verdict.findings += [f"kuberay player: {e}" for e in self.player.errors]
        counts, _ = operator_requests(self.server.audit_log, self.audit_offset)
        for (verb, resource, code), n in sorted(counts.items(), key=str):
            if verb != "created" and resource in ("rayjobs", "configmaps", "finetunejobs/status"):
                result.requests[f"{verb} {resource} {code}"] = result.requests.get(f"{verb} {resource} {code}", 0) + n
        self.api.close()
        return result


def _kill_delay(rng: random.Random, process: OperatorProcess, samples: list[float]) -> None:
    """Wait until the seeded moment of the next kill: during start-up (a third of the
    kills), or a seeded time after the operator became healthy."""
    spawned = time.monotonic()
    if rng.random() < 1 / 3:
        time.sleep(rng.uniform(0.1, 2.5))
        return
    process.wait_healthy()
    samples.append(time.monotonic() - spawned)
    time.sleep(rng.uniform(0.0, 4.0))


def operator_kill(server: RealKube, workdir: Path, *, seed: int = 1, jobs: int = 50, kills: int = 30,
                  limit: int = 3, pace: float = 1.5, converge_timeout: float = 240) -> Result:
    rng = random.Random(seed)
    run = Run(server, workdir, "kill", seed, jobs, limit, pace)
    operator = run.operator("operator", ["--standalone"])
    result = Result("operator SIGKILL loop", seed, kills, 0, Verdict(), 0.0, math.inf)
    recovery: list[float] = []
    try:
        for k in range(kills):
            operator.start()
            # Jobs arrive in batches while the operator starts, all of them by 60% of the kills.
            run.create_up_to(math.ceil(jobs * (k + 1) / max(1, 0.6 * kills)))
            _kill_delay(rng, operator, recovery)
            if operator.kill():
                result.faults += 1
            else:
                result.crashed += 1
                result.notes.append(f"the operator exited by itself before kill {k}:\n{operator.log(1500)}")
        run.create_up_to(jobs)
        operator.start()
        operator.wait_healthy()
        result.converge_s = run.wait_converged(converge_timeout, operator.alive)
    finally:
        operator.stop()
    result.recovery_max_s = max(recovery, default=0.0)
    return run.finish(result)


def two_replicas(server: RealKube, workdir: Path, *, seed: int = 2, jobs: int = 30, restarts: int = 6,
                 limit: int = 3, pace: float = 1.5, converge_timeout: float = 240) -> Result:
    """Replica a runs with --standalone (no peering); replica b has a peering object of
    its own name, so neither sees the other and both work every job."""
    rng = random.Random(seed)
    run = Run(server, workdir, "replicas", seed, jobs, limit, pace)
    for namespace in run.namespaces:
        run.api.create("kopf.dev/v1", "kopfpeerings", namespace,
                       {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                        "metadata": {"name": "chaos-b", "namespace": namespace}})
    replicas = [run.operator("replica-a", ["--standalone"]),
                run.operator("replica-b", ["--peering-name", "chaos-b"])]
    result = Result("two replicas, no/own peering", seed, restarts, 0, Verdict(), 0.0, math.inf)
    recovery: list[float] = []
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_healthy()
        for k in range(restarts):
            run.create_up_to(math.ceil(jobs * (k + 1) / max(1, 0.6 * restarts)))
            time.sleep(rng.uniform(0.5, 4.0))
            victim = replicas[rng.randrange(2)]
            if victim.kill():
                result.faults += 1
            else:
                result.crashed += 1
                result.notes.append(f"a replica exited by itself:\n{victim.log(1500)}")
            started = time.monotonic()
            victim.start()
            victim.wait_healthy()
            recovery.append(time.monotonic() - started)
        run.create_up_to(jobs)
        result.converge_s = run.wait_converged(converge_timeout, lambda: all(r.alive() for r in replicas))
    finally:
        for replica in replicas:
            replica.stop()
    result.recovery_max_s = max(recovery, default=0.0)
    return run.finish(result)


def _proxy_kubeconfig(path: Path, proxy_url: str, token: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "chaos",
        "clusters": [{"name": "proxy", "cluster": {"server": proxy_url}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "chaos", "context": {"cluster": "proxy", "user": "admin"}}]}))
    return path


def api_faults(server: RealKube, workdir: Path, *, seed: int = 3, jobs: int = 30, share: float = 0.1,
               limit: int = 3, pace: float = 1.5, converge_timeout: float = 300) -> Result:
    """One operator whose every request goes through the fault proxy (chaos.proxy):
    `share` of them fail, stall, reset or cut their watch stream."""
    run = Run(server, workdir, "faults", seed, jobs, limit, pace)
    proxy = FaultProxy(server.url, str(server.ca_cert), seed, share).start()
    run.kubeconfig = _proxy_kubeconfig(workdir / "kubeconfig-proxy", proxy.url, server.tokens[ADMIN])
    operator = run.operator("operator", ["--standalone"])
    result = Result(f"API faults ({share:.0%} of requests)", seed, 0, 0, Verdict(), 0.0, math.inf)
    try:
        operator.start()
        started = time.monotonic()
        operator.wait_healthy(timeout=120)
        result.recovery_max_s = time.monotonic() - started
        run.create_up_to(jobs)
        result.converge_s = run.wait_converged(converge_timeout, operator.alive)
        try:
            errors = metric_sum(operator.metrics(), "finetune_operator_reconcile_errors_total")
            result.notes.append(f"operator metric finetune_operator_reconcile_errors_total: {errors:.0f}")
        except OSError as err:
            result.crashed += 1
            result.notes.append(f"the operator's metrics server is gone ({err}):\n{operator.log(3000)}")
    finally:
        operator.stop()
        proxy.stop()
    result.iterations = proxy.counts["requests"]
    result.faults = sum(n for kind, n in proxy.counts.items() if kind != "requests")
    result.notes.append("faults injected: " + ", ".join(f"{kind} {n}" for kind, n in sorted(proxy.counts.items())
                                                       if kind != "requests"))
    return run.finish(result)


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample of one metric in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name)


SCENARIOS: dict[str, Callable[..., Result]] = {"operator_kill": operator_kill, "two_replicas": two_replicas,
                                               "api_faults": api_faults}


def run_named(name: str, server: RealKube, workdir: Path, **sizes: Optional[int]) -> Result:
    return SCENARIOS[name](server, workdir, **{k: v for k, v in sizes.items() if v is not None})
