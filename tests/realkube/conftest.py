"""Tests against a real kube-apiserver and etcd (marker `kube`; see tests/support/real_kube.py).

One server serves the whole session (the `real_kube` fixture, tests/conftest.py): each
test works in namespaces of its own. Without the binaries the tests are skipped with
the way to build them (`make test` always builds them first).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from tests.support.helpers import free_port, http_ok
from tests.support.paths import REPO


class OperatorRun:
    """`finetune operator` as a subprocess with a given kubeconfig."""

    def __init__(self, kubeconfig: Path, log_path: Path, flags: list[str]) -> None:
        self.health_port = free_port()
        args = [str(Path(sys.executable).parent / "finetune"), "operator", "--kubeconfig", str(kubeconfig),
                "--bind", "127.0.0.1", "--metrics-port", str(free_port()),
                "--health-port", str(self.health_port), "--resync-seconds", "1", *flags]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("KUBECONFIG", None)
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"operator not healthy:\n{self.log()}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.health_port}/healthz")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def run_operator(tmp_path: Path) -> Iterator[Callable[..., OperatorRun]]:
    started: list[OperatorRun] = []

    def start(kubeconfig: Path, flags: list[str]) -> OperatorRun:
        """flags: which namespaces and peering, e.g. ["--standalone", "--namespace=a"]."""
        run = OperatorRun(kubeconfig, tmp_path / f"operator-{len(started)}.log", flags)
        started.append(run)
        return run

    yield start
    for run in started:
        run.stop()
        print(f"--- {run.log_path}\n{run.log()}")  # shown when the test fails
