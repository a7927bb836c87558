"""`pytest -m gpu` runs the GPU check script where a CUDA device exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.gpu
def test_every_gpu_check_passes():
    script = Path(__file__).with_name("run_checks.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "FAIL" not in done.stdout and done.stdout.count("PASS") == 5
