"""End to end: the operator's RayJob really runs, and the job ends with a real model.

The test plays KubeRay for real: it takes the RayJob the operator built, mounts its
ConfigMap (writes the JobConfig to a temporary file at the path the entrypoint
names), gives the head container's environment plus the Secret the pod would get,
and runs the entrypoint as a subprocess on a local Ray with a tiny model. The
subprocess's stdout becomes the submitter pod's log, as `ray job submit` would make
it; the exit code decides the RayJob's final status. Output goes to a real SeaweedFS
S3 store, from which the test loads the fine-tuned model.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from finetune_operator import builders
from tests.operator.scenarios.conftest import (  # noqa: F401  (fixtures)
    JOBS,
    RAYJOBS,
    assert_valid_rayjob,
    kube,
    operator,
    phase_is,
    set_rayjob_state,
    start_operator,
    start_submitter,
)
from tests.support.jobs import runnable_job
from tests.support.s3 import s3_bucket, s3_store  # noqa: F401  (fixtures)
from tests.trainer.unit.core_helpers import make_tiny_model_dir, sentiment_rows, write_rows

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _container_env(container: dict, kube, namespace: str) -> dict[str, str]:
    """What the kubelet would put in the container's environment."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        secret = kube.get("secrets", source["secretRef"]["name"], namespace)
        env.update(secret.get("stringData") or {})
        import base64

        env.update({k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()})
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def test_rayjob_runs_for_real_and_the_job_ends_with_a_loadable_model(kube, operator, s3_store, s3_bucket,
                                                                     tmp_path: Path):
    model_dir = make_tiny_model_dir(tmp_path / "tiny-bert", num_labels=2, label_names=["neg", "pos"])
    train = write_rows(tmp_path / "data" / "train.csv", sentiment_rows(40))
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds", "namespace": "default"},
                 "stringData": {"AWS_ACCESS_KEY_ID": s3_store.access_key,
                                "AWS_SECRET_ACCESS_KEY": s3_store.secret_key}})
    kube.create(runnable_job(
        "tiny", model={"source": str(model_dir), "labels": ["neg", "pos"]},
        data={"train": str(train), "maxSeqLength": 16, "validationFraction": 0.2},
        training={"maxSteps": 4, "batchSize": 4, "evaluation": {"every": 2, "unit": "step"},
                  "checkpoint": {"every": 2, "unit": "step"}},
        output={"uri": f"s3://{s3_bucket}/models", "endpoint": s3_store.endpoint, "region": s3_store.region,
                "secretRef": {"name": "s3-creds"}},
    ))

    rayjob = kube.wait_for(RAYJOBS, "tiny", lambda obj: True, "default")
    assert_valid_rayjob(rayjob)
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    configmap = kube.get("configmaps", "tiny-config", "default")
    config_file = tmp_path / "etc" / builders.CONFIG_FILE
    config_file.parent.mkdir(parents=True)
    config_file.write_text(configmap["data"][builders.CONFIG_FILE])
    command = shlex.split(rayjob["spec"]["entrypoint"].replace(builders.CONFIG_PATH, str(config_file)))
    assert command[:3] == ["python", "-m", "finetune_trainer"]
    command[0] = sys.executable

    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "RAY_", "KUBECONFIG"))}
    env.update(_container_env(head, kube, "default"))
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})

    set_rayjob_state(kube, "tiny", "Running", "RUNNING", startTime="2026-01-01T00:00:00Z")
    pod = start_submitter(kube, "tiny", "")
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                              cwd=tmp_path)
    lines: list[str] = []

    def pump() -> None:
        assert driver.stdout is not None
        for line in driver.stdout:
            lines.append(line)
            kube.set_pod_log("default", pod, line, append=True)

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    code = driver.wait(timeout=600)
    pumping.join(timeout=10)
    assert code == 0, "the trainer failed:\n" + "".join(lines[-60:])

    set_rayjob_state(kube, "tiny", "Complete", "SUCCEEDED", endTime="2026-01-01T00:05:00Z")
    job = kube.wait_for(JOBS, "tiny", phase_is("Succeeded"), "default", timeout=30)
    model_uri = job["status"]["modelUri"]
    assert model_uri.startswith(f"s3://{s3_bucket}/models/default-tiny")
    assert job["status"]["progress"]["step"] == 4

    # The model in S3 loads and classifies.
    from pyarrow import fs as pafs
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = tmp_path / "downloaded"
    local.mkdir()
    pafs.copy_files(model_uri.removeprefix("s3://"), str(local), source_filesystem=s3_store.filesystem(),
                    destination_filesystem=pafs.LocalFileSystem())
    model = AutoModelForSequenceClassification.from_pretrained(local)
    tokenizer = AutoTokenizer.from_pretrained(local)
    logits = model(**tokenizer(["a great movie"], return_tensors="pt")).logits
    assert tuple(logits.shape) == (1, 2)
    assert model.config.id2label == {0: "neg", 1: "pos"}


def test_cleanup_job_script_deletes_only_its_runs_artifacts(s3_store, s3_bucket, tmp_path: Path):
    """The cleanup Job's command, run as the Job's container would, against real S3."""
    from finetune_operator.builders import build_cleanup_job
    from finetune_operator.settings import Settings

    filesystem = s3_store.filesystem()
    for run in ("default-scratch", "default-keeper"):
        with filesystem.open_output_stream(f"{s3_bucket}/models/{run}/model/config.json") as stream:
            stream.write(b"{}")
    job = runnable_job("scratch", outputPolicy="Delete",
                       output={"uri": f"s3://{s3_bucket}/models", "endpoint": s3_store.endpoint,
                               "region": s3_store.region})
    job["metadata"]["uid"] = "uid-scratch"
    container = build_cleanup_job(job, Settings())["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][0] == "python"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update({item["name"]: item["value"] for item in container["env"]})
    env.update(s3_store.env())  # what envFrom the job's Secret would give
    result = subprocess.run([sys.executable, *container["command"][1:]], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    from pyarrow import fs as pafs

    gone = filesystem.get_file_info(f"{s3_bucket}/models/default-scratch/model/config.json")
    kept = filesystem.get_file_info(f"{s3_bucket}/models/default-keeper/model/config.json")
    assert gone.type == pafs.FileType.NotFound
    assert kept.type == pafs.FileType.File
