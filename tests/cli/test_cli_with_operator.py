"""The CLI and the real operator process together, against the emulator, with the
test playing KubeRay: submit -> RayJob -> progress in `list`/`logs` -> `wait` exits 0."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli.helpers import JOB_YAML
from tests.support.kube_fixtures import KubeRayDriver


@pytest.fixture
def operator_process(kube, tmp_path):
    log_path = tmp_path / "operator.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from finetune_operator.cli import main; sys.exit(main())",
             "operator", "-n", "default", "--standalone", "--metrics-port", "0", "--health-port", "0",
             "--resync-seconds", "0.5", "--kubeconfig", str(kube.kubeconfig_path)],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    print(log_path.read_text()[-10000:])  # pytest shows captured output only when the test fails


@pytest.mark.e2e
def test_submit_follow_and_wait_with_the_real_operator(cli, kube, tmp_path, operator_process):
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB_YAML.format(name="job1"))
    code, out, err = cli("submit", str(manifest))
    assert code == 0, err

    job = kube.wait_for("finetunejobs", "job1", lambda o: bool((o.get("status") or {}).get("rayJobName")),
                        namespace="default", timeout=60)
    # The operator records the child's name in status before it creates the child.
    kube.wait_for("rayjobs", job["status"]["rayJobName"], lambda _: True, namespace="default", timeout=60)
    driver = KubeRayDriver(kube, "default", job["status"]["rayJobName"])
    driver.start(log="starting the trainer\n")
    driver.progress(step=30, totalSteps=100, percent=30.0, metrics={"eval_loss": 0.5},
                    bestMetrics={"eval_loss": 0.5})
    kube.wait_for("finetunejobs", "job1",
                  lambda o: ((o.get("status") or {}).get("progress") or {}).get("step") == 30,
                  namespace="default", timeout=60)

    code, out, _ = cli("list")
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == ["job1"])
    assert row[1:5] == ["Running", "30%", "(step", "30/100)"]
    code, out, _ = cli("logs", "job1")
    assert code == 0 and out.startswith("starting the trainer\nfinetune-progress: ")

    driver.progress(state="succeeded", step=100, totalSteps=100, percent=100.0, metrics={"eval_loss": 0.25},
                    bestMetrics={"eval_loss": 0.25}, modelUri="s3://bucket/out/job1/model")
    driver.finish(succeeded=True)
    code, out, err = cli("wait", "job1", "--timeout", "60")
    assert code == 0, err
    assert out.strip() == "FineTuneJob job1 Succeeded: s3://bucket/out/job1/model"
    code, out, _ = cli("status", "job1")
    assert "Phase:" in out and "Succeeded" in out and "eval_loss=0.25" in out
