"""Scenario tests: the real `finetune operator` process against an API server.

The operator runs as a subprocess (what a pod runs), with a kubeconfig for the
server, so its watch streams, retries and restarts are the real ones. The tests play
KubeRay: they set RayJob status by hand and give the submitter pod a log.

Every test that uses `kube` runs twice: `[emulator]` against the project's emulator
(a fresh one per test) and `[real]` against the session's real kube-apiserver and etcd
(marker `kube`; its namespaces are emptied before and after each test, see
tests/support/real_kube_handle.py). A test marked `emulator_only("why")` needs what
only the emulator gives (pod logs, fault injection, dropped watches, request counts of
its internals); its `[real]` run is skipped with that reason. A test marked
`garbage_collector` runs kube-controller-manager's garbage collector for its `[real]`
run (the emulator collects garbage synchronously).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import pytest

from tests.support.kube_fixtures import KubeHandle, start_kube
from tests.support.rayjob_schema import assert_valid_rayjob  # noqa: F401  (re-exported)
from tests.support.real_kube_handle import RealKubeHandle

from tests.support.paths import REPO
from tests.support.helpers import free_port, http_ok  # noqa: F401  (free_port re-exported)

RAYJOBS = "rayjobs"
JOBS = "finetunejobs"
# The scenario tests' server: the emulator's handle or the real server's, same calls.
Kube = Union[KubeHandle, RealKubeHandle]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test that uses `kube` runs on the emulator and on the real server."""
    if "kube" not in metafunc.fixturenames:
        return
    only = metafunc.definition.get_closest_marker("emulator_only")
    real_marks = [pytest.mark.kube]
    if only is not None:
        reason = only.args[0] if only.args else only.kwargs.get("reason", "")
        assert reason, f"{metafunc.definition.nodeid}: emulator_only needs a reason"
        real_marks.append(pytest.mark.skip(reason=f"emulator only: {reason}"))
    metafunc.parametrize("kube", [pytest.param("emulator"), pytest.param("real", marks=real_marks)],
                         indirect=True)


@pytest.fixture
def kube(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kube]:
    """The emulator (a fresh one) or the session's real server (its namespaces emptied)."""
    if getattr(request, "param", "emulator") == "emulator":
        handle = start_kube(tmp_path)
        try:
            yield handle
        finally:
            handle.stop()
        return
    server = request.getfixturevalue("real_kube")
    real = RealKubeHandle(server, tmp_path / "kubeconfig")
    real.reset()
    collect = request.node.get_closest_marker("garbage_collector") is not None
    if collect:
        server.start_controller_manager()
    try:
        yield real
    finally:
        if collect:
            server.stop_controller_manager()
        real.reset()


class OperatorProcess:
    """`finetune operator` as a subprocess, with its metrics and probe ports."""

    def __init__(self, kube: Kube, tmp_path: Path, namespaces: list[str],
                 env: Optional[dict[str, str]] = None, resync: float = 1.0,
                 peering: Optional[list[str]] = None, log_name: str = "operator.log") -> None:
        self.kube = kube
        self.peering = peering
        self.namespaces = namespaces
        self.extra_env = env or {}
        self.resync = resync
        self.log_path = tmp_path / log_name
        self.process: Optional[subprocess.Popen] = None
        self.metrics_port = 0
        self.health_port = 0

    def start(self) -> "OperatorProcess":
        self.metrics_port, self.health_port = free_port(), free_port()
        args = [str(Path(sys.executable).parent / "finetune"), "operator",
                "--kubeconfig", str(self.kube.kubeconfig_path), *(self.peering or ["--standalone"]),
                "--bind", "127.0.0.1",
                "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port),
                "--resync-seconds", str(self.resync)]
        if self.namespaces == ["*all*"]:
            args.append("--all-namespaces")
        for namespace in self.namespaces:
            if namespace != "*all*":
                args += ["--namespace", namespace]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        env.pop("KUBECONFIG", None)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        log.close()
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"operator exited with {self.process.returncode}:\n{self.log()}")
            if http_ok(f"http://127.0.0.1:{self.health_port}/healthz"):
                return
            time.sleep(0.1)
        raise AssertionError(f"operator not healthy within {timeout} s:\n{self.log()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as rsp:
            return rsp.read().decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no clean-up, as when a node dies."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def start_operator(kube: Kube, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(namespaces: tuple[str, ...] = ("default",), env: Optional[dict[str, str]] = None,
              resync: float = 1.0, peering: Optional[list[str]] = None) -> OperatorProcess:
        process = OperatorProcess(kube, tmp_path, list(namespaces), env, resync, peering,
                                  log_name=f"operator-{len(started)}.log").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    return start_operator()


# ------------------------------------------------------------------ playing KubeRay


def phase_is(*phases: str) -> Callable[[dict], bool]:
    return lambda job: (job.get("status") or {}).get("phase") in phases


def set_rayjob_state(kube: Kube, name: str, deployment: str, job_status: Optional[str] = None,
                     namespace: str = "default", **extra: Any) -> dict:
    status = {"jobDeploymentStatus": deployment, **extra}
    if job_status is not None:
        status["jobStatus"] = job_status
    return kube.patch_status(RAYJOBS, name, status, namespace)


def start_submitter(kube: Kube, rayjob: str, log: str, namespace: str = "default") -> str:
    """The submitter pod KubeRay's Job would run, with `log` as its output."""
    pod = f"{rayjob}-submitter"
    kube.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": namespace,
                     "labels": {"batch.kubernetes.io/job-name": rayjob, "job-name": rayjob}},
        "spec": {"containers": [{"name": "ray-job-submitter", "image": "trainer"}]},
    })
    kube.set_pod_log(namespace, pod, log)
    return pod


def progress_line(**fields: Any) -> str:
    from finetune_trainer.progress import ProgressReport

    return ProgressReport(**fields).to_line()


def events_for(kube: Kube, name: str, namespace: str = "default") -> list[dict]:
    return [event for event in kube.list("events", namespace)
            if (event.get("involvedObject") or {}).get("name") == name]


def event_reasons(kube: Kube, name: str, namespace: str = "default") -> list[str]:
    return [event.get("reason") for event in events_for(kube, name, namespace)]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


def creates(kube: Kube, resource: str = RAYJOBS, at_least: int = 0) -> int:
    """How many create requests for `resource` the operator has made, counted by the
    server (failed and refused ones too), so an absence is checked over the whole test
    rather than looked up once. The real server counts from its audit log, which may
    trail a response a little: this waits until `at_least` are counted."""
    wait_until(lambda: kube.request_count("create", resource) >= at_least,
               what=f"{at_least} create requests for {resource}")
    return kube.request_count("create", resource)


def metric_value(text: str, name: str, labels: Optional[dict[str, str]] = None) -> Optional[float]:
    """The value of one sample in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    return None

