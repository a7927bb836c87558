"""`python -m tests.support.kube_emulator` serves on its own, for manual use."""

from __future__ import annotations

import subprocess
import sys

import requests

from tests.support.paths import FINETUNE_CRD
from tests.support.paths import REPO as ROOT


def test_standalone_server_serves_the_given_crd():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.kube_emulator", "--crd", str(FINETUNE_CRD), "--namespace", "team"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("Kubernetes API emulator on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].strip()
        resources = requests.get(f"{url}/apis/finetune.dev/v1alpha1", timeout=10).json()["resources"]
        assert "finetunejobs" in {r["name"] for r in resources}
        names = {n["metadata"]["name"] for n in requests.get(f"{url}/api/v1/namespaces", timeout=10).json()["items"]}
        assert names == {"default", "team"}
    finally:
        process.terminate()
        process.wait(timeout=15)
        process.stdout.close()
