"""Helpers for the CLI tests: run `finetune` in-process, a manifest as a user writes it,
triggers. FineTuneJob dicts come from tests.support.jobs."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest

from finetune_operator.cli import main
from tests.support.kube_fixtures import KubeHandle

JOB_YAML = """\
apiVersion: finetune.dev/v1alpha1
kind: FineTuneJob
metadata:
  name: {name}
  labels: {{team: nlp}}
spec:
  model:
    source: prajjwal1/bert-tiny
    labels: [neg, pos]
  data:
    train: s3://bucket/train.csv
  training:
    learningRate: 5e-5
  output:
    uri: s3://bucket/out
"""


class Cli:
    """Runs `finetune ...` in-process against the emulator and captures its output."""

    def __init__(self, kube: KubeHandle, capsys: pytest.CaptureFixture) -> None:
        self.kube = kube
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        command, rest = argv[0], list(argv[1:])
        code = main([command, "--kubeconfig", str(self.kube.kubeconfig_path), *rest])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


def when_watched(kube: KubeHandle, action: Callable[[], Any], timeout: float = 20.0) -> threading.Thread:
    """Run `action` on a thread as soon as someone watches the emulator (the CLI's `wait`)."""
    def run() -> None:
        deadline = time.monotonic() + timeout
        while kube.open_watches() == 0:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
