"""The real operator process (`finetune operator`, kopf) for the chaos loops.

`OperatorProcess.start()` spawns it as a pod's container would run it; `kill()` sends
SIGKILL (no clean-up, as when a node dies) and `stop()` SIGTERM. The loops do not wait
for it to become healthy before killing it: a kill during start-up (logging in,
listing, resuming) is one of the moments they aim at.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

from tests.support.helpers import free_port, http_ok, stop
from tests.support.paths import REPO


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log_path: Path, namespaces: list[str], flags: list[str],
                 env: Optional[dict[str, str]] = None, resync_seconds: float = 1.0) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.namespaces = namespaces
        self.flags = flags
        self.env = env or {}
        self.resync_seconds = resync_seconds
        self.process: Optional[subprocess.Popen] = None
        self.health_port = 0
        self.metrics_port = 0
        self.starts = 0

    def start(self) -> "OperatorProcess":
        self.health_port, self.metrics_port = free_port(), free_port()
        args = [str(Path(sys.executable).parent / "finetune"), "operator", "--kubeconfig", str(self.kubeconfig),
                "--bind", "127.0.0.1", "--metrics-port", str(self.metrics_port),
                "--health-port", str(self.health_port), "--resync-seconds", str(self.resync_seconds), *self.flags]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("KUBECONFIG", None)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.health_port}/healthz")

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if not self.alive():
                raise RuntimeError(f"operator exited with {self.process and self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"operator not healthy within {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def kill(self) -> bool:
        """SIGKILL; True if it was running (a process that died on its own is a finding)."""
        if not self.alive():
            return False
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        return True

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def log(self, size: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-size:] if self.log_path.exists() else ""
