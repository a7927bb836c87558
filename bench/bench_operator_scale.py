"""The operator at scale: 1,000 FineTuneJobs across 10 namespaces.

Starts an API server with our CRD and KubeRay's RayJob CRD — the project's fast
emulator (`python -m bench operator_scale`) or a real kube-apiserver 1.37 with etcd
(`python -m bench operator_scale_real`, tests/kube/build.sh builds them) — and the
real `finetune operator` process, applies 1,000 jobs, and measures:

- time until every job has its RayJob and a Pending status (jobs/s), beside a baseline:
  the same 1,000 RayJobs (built by the same builders) created directly with the same
  client, 50 requests in flight — what the API server allows at best;
- the operator's peak RSS (psutil, sampled every 100 ms), beside its RSS at idle;
- reconcile p50/p99, from the operator's own histogram (Prometheus buckets,
  interpolated as `histogram_quantile` does).

Targets: >= 50 jobs/s and peak RSS < 300 MB.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

JOBS = int(os.environ.get("BENCH_OPERATOR_JOBS", "1000"))
NAMESPACES = 10
TARGET_RATE = 50.0
TARGET_RSS_MB = 300.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _manifest(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"source": "/models/tiny-bert", "labels": ["negative", "positive"]},
            "data": {"train": f"s3://datasets/{namespace}/train.csv"},
            "training": {"maxSteps": 10},
            "output": {"uri": f"s3://models/{namespace}"},
            "resources": {"workers": 2, "worker": {"cpu": "2", "memory": "4Gi"}},
        },
    }


def _quantile(buckets: list[tuple[float, float]], q: float) -> Optional[float]:
    """histogram_quantile over cumulative (upper bound, count) buckets."""
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            width = count - previous_count
            fraction = (rank - previous_count) / width if width else 0.0
            return previous_bound + (bound - previous_bound) * fraction
        previous_bound, previous_count = bound, count
    return previous_bound


def _reconcile_quantiles(metrics_text: str) -> tuple[Optional[float], Optional[float], int]:
    from prometheus_client.parser import text_string_to_metric_families

    buckets: list[tuple[float, float]] = []
    count = 0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "finetune_operator_reconcile_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                count = int(sample.value)
    buckets.sort()
    return _quantile(buckets, 0.5), _quantile(buckets, 0.99), count


class _RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stopped = threading.Event()

    def sample(self) -> int:
        try:
            rss = self.process.memory_info().rss
        except psutil.Error:
            return 0
        self.peak = max(self.peak, rss)
        return rss

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            self.sample()


def _wait_healthy(process: subprocess.Popen, port: int, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"operator exited: {log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("operator did not become healthy")


class _Emulator:
    """The project's API emulator (tests/support/kube_emulator.py)."""

    name = "the project's API emulator"
    token: Optional[str] = None
    ca_path: Optional[str] = None

    def __init__(self, workdir: Path) -> None:
        from tests.support.kube_fixtures import start_kube

        self.kube = start_kube(workdir, history_size=20000)
        self.url = self.kube.url
        self.kubeconfig = self.kube.kubeconfig_path

    def create_namespace(self, name: str) -> None:
        self.kube.create_namespace(name)

    def converged(self, namespaces: set[str]) -> int:
        """Jobs that are Pending with their RayJob present, counted on the emulator's
        own thread: listing 2,000 objects through the test client would deep-copy them
        all on every poll and slow the server being measured."""
        def count() -> int:
            store = self.kube.store
            jobs = store.objects[store.find_type("finetunejobs").storage_key]
            rayjobs = store.objects[store.find_type("rayjobs").storage_key]
            return sum(
                1 for (namespace, _), job in jobs.items()
                if namespace in namespaces and (job.get("status") or {}).get("phase") == "Pending"
                and (namespace, job["status"].get("rayJobName")) in rayjobs
            )
        return self.kube._call(count)

    def rayjobs(self, namespace: str) -> list[dict]:
        return self.kube.list("rayjobs", namespace)

    def cpu_line(self, bench_cpu: float) -> str:
        return f"emulator + this script {bench_cpu:.0f} (the emulator runs in this process)"

    def stop(self) -> None:
        self.kube.stop()


class _RealServer:
    """A real kube-apiserver and etcd (tests/support/real_kube.py), admin identity."""

    name = "a real kube-apiserver 1.37 + etcd 3.7"

    def __init__(self, workdir: Path) -> None:
        from tests.support.real_kube import ADMIN, RealKube, missing_binaries

        missing = missing_binaries()
        if missing:
            raise RuntimeError(f"{', '.join(missing)} not built: run tests/kube/build.sh and set "
                               "FINETUNE_KUBE_BIN_DIR to the folder it prints")
        self.kube = RealKube(workdir).start()
        self.url = self.kube.url
        self.token = self.kube.tokens[ADMIN]
        self.ca_path = str(self.kube.ca_cert)
        self.kubeconfig = self.kube.write_kubeconfig(ADMIN)

    def create_namespace(self, name: str) -> None:
        self.kube.create_namespace(name)

    def _items(self, path: str) -> list[dict]:
        return (self.kube.get(path) or {}).get("items", [])

    def converged(self, namespaces: set[str]) -> int:
        """Pending jobs with their RayJob present, by two list calls per namespace."""
        from tests.support.real_kube import api_path

        done = 0
        for namespace in namespaces:
            rayjobs = {o["metadata"]["name"] for o in self.rayjobs(namespace)}
            done += sum(1 for job in self._items(api_path("finetune.dev/v1alpha1", "finetunejobs", namespace))
                        if (job.get("status") or {}).get("phase") == "Pending"
                        and job["status"].get("rayJobName") in rayjobs)
        return done

    def rayjobs(self, namespace: str) -> list[dict]:
        from tests.support.real_kube import api_path

        return self._items(api_path("ray.io/v1", "rayjobs", namespace))

    def cpu_line(self, bench_cpu: float) -> str:
        server = 0.0
        for process in self.kube.processes.values():
            try:
                times = psutil.Process(process.pid).cpu_times()
                server += times.user + times.system
            except psutil.Error:
                pass
        return f"kube-apiserver + etcd {server:.0f}, this script {bench_cpu:.0f}"

    def stop(self) -> None:
        self.kube.stop()


BACKENDS = {"emulator": _Emulator, "real": _RealServer}


def _baseline(kube: Any, namespaces: list[str]) -> float:
    """Seconds to create the same RayJobs directly with the operator's client."""
    from finetune_operator import builders, kube as kube_api
    from finetune_operator.api import FineTuneJobSpec
    from finetune_operator.settings import Settings

    settings = Settings()
    bodies = []
    for index in range(JOBS):
        namespace = namespaces[index % NAMESPACES]
        manifest = _manifest(f"base-{index}", namespace)
        stored = {**manifest, "metadata": {**manifest["metadata"], "uid": f"uid-{index}"}}
        bodies.append((namespace, builders.build_rayjob(stored, FineTuneJobSpec.model_validate(manifest["spec"]),
                                                        settings)))

    async def create_all() -> float:
        async with kube_api.standalone(kube.url, token=kube.token, ca_path=kube.ca_path) as api:
            limit = asyncio.Semaphore(50)

            async def one(namespace: str, body: dict) -> None:
                async with limit:
                    await api.create_rayjob(namespace, body)

            started = time.perf_counter()
            await asyncio.gather(*(one(ns, body) for ns, body in bodies))
            return time.perf_counter() - started

    return asyncio.run(create_all())


async def _apply(kube: Any, manifests: list[dict], in_flight: int = 20) -> float:
    """POST the FineTuneJobs over HTTP, `in_flight` at a time, as `kubectl apply` with
    parallelism would; returns the seconds it took."""
    import ssl

    import aiohttp

    limit = asyncio.Semaphore(in_flight)
    headers = {"Authorization": f"Bearer {kube.token}"} if kube.token else {}
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=kube.ca_path)) if kube.ca_path else None
    async with aiohttp.ClientSession(kube.url, headers=headers, connector=connector) as session:
        async def one(manifest: dict) -> None:
            namespace = manifest["metadata"]["namespace"]
            async with limit:
                async with session.post(f"/apis/finetune.dev/v1alpha1/namespaces/{namespace}/finetunejobs",
                                        json=manifest) as response:
                    if response.status >= 300:
                        raise RuntimeError(f"apply failed: {response.status} {await response.text()}")

        started = time.perf_counter()
        await asyncio.gather(*(one(m) for m in manifests))
        return time.perf_counter() - started


def main(backend: str = "emulator") -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    kube = BACKENDS[backend](workdir)
    namespaces = [f"team-{i}" for i in range(NAMESPACES)]
    for namespace in namespaces:
        kube.create_namespace(namespace)
    operator: Optional[subprocess.Popen] = None
    try:
        # Baseline first, in namespaces the operator does not watch.
        base_namespaces = [f"base-{i}" for i in range(NAMESPACES)]
        for namespace in base_namespaces:
            kube.create_namespace(namespace)
        baseline_seconds = _baseline(kube, base_namespaces)
        # The floor: applying the FineTuneJobs alone, with no operator running.
        floor_namespace = "floor"
        kube.create_namespace(floor_namespace)
        floor_seconds = asyncio.run(_apply(kube, [_manifest(f"floor-{i}", floor_namespace)
                                                      for i in range(JOBS)]))

        metrics_port, health_port = _free_port(), _free_port()
        log_path = workdir / "operator.log"
        env = {**os.environ, "FINETUNE_CONCURRENCY_LIMIT": str(JOBS)}
        env.pop("KUBECONFIG", None)
        args = [str(Path(sys.executable).parent / "finetune"), "operator", "--kubeconfig", str(kube.kubeconfig),
                "--standalone", "--bind", "127.0.0.1", "--metrics-port", str(metrics_port),
                "--health-port", str(health_port), "--resync-seconds", "60"]
        for namespace in namespaces:
            args += ["--namespace", namespace]
        with open(log_path, "wb") as log:
            operator = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _wait_healthy(operator, health_port, log_path)
        sampler = _RssSampler(operator.pid)
        idle_rss = sampler.sample()
        sampler.start()

        started = time.perf_counter()
        applier = threading.Thread(target=lambda: asyncio.run(_apply(
            kube, [_manifest(f"job-{i}", namespaces[i % NAMESPACES]) for i in range(JOBS)])))
        applier.start()

        deadline = time.monotonic() + 600
        done = 0
        while time.monotonic() < deadline:
            done = kube.converged(set(namespaces))
            if done == JOBS:
                break
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        applier.join()
        cpu = sampler.process.cpu_times()
        operator_cpu = cpu.user + cpu.system
        own = psutil.Process().cpu_times()
        bench_cpu = own.user + own.system
        sampler.stopped.set()
        sampler.join()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            p50, p99, reconciles = _reconcile_quantiles(response.read().decode())

        # Every RayJob against KubeRay's schema (both servers also validated each on create).
        from tests.operator.scenarios.conftest import assert_valid_rayjob

        invalid = 0
        for namespace in namespaces:
            for rayjob in kube.rayjobs(namespace):
                try:
                    assert_valid_rayjob(rayjob)
                except AssertionError:
                    invalid += 1

        rate = done / elapsed if elapsed else 0.0
        base_rate = JOBS / baseline_seconds
        mb = 1024 * 1024
        print(f"server: {kube.name}; jobs: {JOBS} in {NAMESPACES} namespaces, applied 20 at a time over HTTP")
        print(f"all RayJobs + Pending: {done}/{JOBS} in {elapsed:.1f} s = {rate:.0f} jobs/s "
              f"(target >= {TARGET_RATE:.0f}); baseline, RayJobs created directly with the same client: "
              f"{baseline_seconds:.1f} s = {base_rate:.0f} RayJobs/s; floor, applying the FineTuneJobs alone "
              f"(no operator): {floor_seconds:.1f} s = {JOBS / floor_seconds:.0f} jobs/s")
        print(f"operator peak RSS: {sampler.peak / mb:.0f} MB (target < {TARGET_RSS_MB:.0f}); "
              f"baseline, idle after start-up: {idle_rss / mb:.0f} MB")
        fmt = (lambda v: f"{v * 1000:.1f} ms" if v is not None else "n/a")
        print(f"reconcile p50 {fmt(p50)}, p99 {fmt(p99)} over {reconciles} reconciles")
        print(f"CPU seconds: operator {operator_cpu:.0f}, {kube.cpu_line(bench_cpu)} "
              f"(2 cores shared by all, and with other users of the machine)")
        print("machine load average (1, 5, 15 min) at the end: "
              + ", ".join(f"{value:.1f}" for value in os.getloadavg()) + " on " + str(os.cpu_count()) + " CPUs")
        print(f"RayJobs invalid against KubeRay's CRD schema: {invalid}")
        print(json.dumps({"jobs_per_second": round(rate, 1), "baseline_rayjobs_per_second": round(base_rate, 1),
                          "floor_apply_jobs_per_second": round(JOBS / floor_seconds, 1),
                          "peak_rss_mb": round(sampler.peak / mb, 1), "idle_rss_mb": round(idle_rss / mb, 1),
                          "reconcile_p50_ms": p50 and round(p50 * 1000, 2),
                          "reconcile_p99_ms": p99 and round(p99 * 1000, 2), "invalid_rayjobs": invalid}))
        if done != JOBS:
            raise RuntimeError(f"only {done} of {JOBS} jobs converged; operator log: {log_path}")
    finally:
        if operator is not None and operator.poll() is None:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
        kube.stop()


if __name__ == "__main__":
    main()
