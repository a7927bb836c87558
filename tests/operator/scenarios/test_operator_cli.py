"""`finetune operator` refuses bad start-up input with one plain line, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.operator.scenarios.conftest import free_port

FINETUNE = str(Path(sys.executable).parent / "finetune")


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("FINETUNE_")}
    environment.update({"HOME": str(tmp_path), **env})
    return subprocess.run([FINETUNE, "operator", *args], capture_output=True, text=True, env=environment,
                          timeout=60, cwd=tmp_path)


def _assert_plain_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr


def test_no_credentials(tmp_path):
    _assert_plain_error(_run(["-n", "default"], tmp_path), "no Kubernetes credentials", "--kubeconfig")


def test_unreadable_kubeconfig(tmp_path):
    broken = tmp_path / "kubeconfig"
    broken.write_text("clusters: [\n")
    _assert_plain_error(_run(["-n", "default", "--kubeconfig", str(broken)], tmp_path), str(broken))


def test_missing_kubeconfig_file(tmp_path):
    _assert_plain_error(_run(["-n", "default", "--kubeconfig", str(tmp_path / "nope")], tmp_path),
                        "--kubeconfig: no such file")


def test_nothing_to_watch(tmp_path):
    _assert_plain_error(_run([], tmp_path), "--namespace", "--all-namespaces")


@pytest.mark.parametrize("flag", ["--metrics-port", "--health-port"])
def test_busy_port_names_the_flag(kube, tmp_path, flag):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = "--health-port" if flag == "--metrics-port" else "--metrics-port"
        result = _run(["-n", "default", "--kubeconfig", str(kube.kubeconfig_path), "--bind", "127.0.0.1",
                       flag, str(port), other, str(free_port())], tmp_path)
    _assert_plain_error(result, f"{flag}: cannot listen on 127.0.0.1:{port}")


def test_bad_settings_name_the_variable(kube, tmp_path):
    result = _run(["-n", "default", "--kubeconfig", str(kube.kubeconfig_path)], tmp_path,
                  FINETUNE_CONCURRENCY_LIMIT="zero")
    _assert_plain_error(result, "FINETUNE_CONCURRENCY_LIMIT")


def test_bad_namespace_pattern(tmp_path):
    _assert_plain_error(_run(["-n", "Team_A"], tmp_path), "--namespace: 'Team_A'")
