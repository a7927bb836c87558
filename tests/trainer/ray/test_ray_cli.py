"""`finetune run` and `python -m finetune_trainer` end to end, as a user runs them:
a subprocess with its own embedded Ray, on a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.jobs import fine_tune_job

pytestmark = pytest.mark.slow

FINETUNE = str(Path(sys.executable).parent / "finetune")


def _manifest(path: Path, model: Path, data: dict[str, str], **spec_extra) -> Path:
    spec = {
        "model": {"source": str(model), "labels": ["billing", "login", "shipping"]},
        "data": {**data, "maxSeqLength": 32},
        "training": {"epochs": 2, "batchSize": 8, "learningRate": 5e-3,
                     "evaluation": {"every": 4, "unit": "step"}, "checkpoint": {"every": 4, "unit": "step"}},
        "output": {"uri": "outputs"},
        "resources": {"workers": 2, "worker": {"cpu": "1"}},
        **spec_extra,
    }
    document = fine_tune_job("cli-job", namespace=None, **spec)
    path.write_text(yaml.safe_dump(document))
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    return env


def test_finetune_run_trains_and_summarises(tiny_model, intent_data, tmp_path):
    manifest = _manifest(tmp_path / "job.yaml", tiny_model, intent_data)
    # The output path is relative: `finetune run` resolves it against the shell's cwd.
    done = subprocess.run([FINETUNE, "run", str(manifest), "--plain", "--cpus", "4",
                           "--set", "training.learningRate=1e-2"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "outputs" / "cli-job"
    metrics = json.loads((root / "metrics.json").read_text())
    assert f"test accuracy: {metrics['test_accuracy']:.4f}" in done.stdout
    assert str(root / "model") in done.stdout
    assert "finetune-progress: " in done.stdout
    assert "learning rate | 0.01" in (root / "README.md").read_text()
    # No library table or progress bar reaches the user (the export reloads the model
    # with a new head, which transformers would report in a LOAD REPORT table).
    printed = done.stdout + done.stderr
    assert "LOAD REPORT" not in printed and "Loading weights" not in printed, printed[-3000:]
    assert "Writing model shards" not in printed


def test_finetune_run_of_a_sweep_prints_no_ray_chatter(tiny_model, intent_data, tmp_path):
    """Ray Tune's start-of-sweep table and result paths, and Ray's notice that it chose
    token authentication, are library chatter: a sweep's output is our own lines."""
    tune = {"searchSpace": {"training.learningRate": {"type": "grid", "values": [1e-4, 1e-2]}},
            "searchAlgorithm": "grid", "numTrials": 1, "metric": "eval_accuracy", "mode": "max"}
    manifest = _manifest(tmp_path / "job.yaml", tiny_model, intent_data, tune=tune)
    done = subprocess.run([FINETUNE, "run", str(manifest), "--plain", "--cpus", "4"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout + done.stderr
    for chatter in ("Configuration for experiment", "View detailed results here", "tensorboard --logdir",
                    "Token authentication is enabled"):
        assert chatter not in printed, printed[-3000:]
    metrics = json.loads((tmp_path / "outputs" / "cli-job" / "metrics.json").read_text())
    chosen = metrics["hyperparameters"]["training.learningRate"]
    assert chosen in (1e-4, 1e-2)
    assert metrics["search"]["chosen"]["training.learningRate"] == chosen
    assert "trained with training.learningRate" in done.stdout and f"{chosen:g}" in done.stdout


def test_finetune_run_reports_bad_data_without_a_traceback(tiny_model, intent_data, tmp_path):
    manifest = _manifest(tmp_path / "job.yaml", tiny_model, intent_data)
    done = subprocess.run([FINETUNE, "run", str(manifest), "--plain", "--cpus", "4",
                           "--set", "data.textColumn=message"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "column 'message' (data.textColumn) not found" in done.stderr, done.stderr[-3000:]


def test_module_entry_point_rejects_a_bad_config_clearly(tmp_path):
    config = tmp_path / "job.json"
    config.write_text(json.dumps({"name": "Bad_Name", "config": {}}))
    done = subprocess.run([sys.executable, "-m", "finetune_trainer", "--config", str(config)],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "is not a valid JobConfig" in done.stderr and "name" in done.stderr


def test_module_entry_point_runs_a_job_config_and_prints_progress(tiny_model, intent_data, tmp_path):
    from tests.trainer.ray.conftest import make_job

    job = make_job("module-entry", tiny_model, intent_data, str(tmp_path / "out"), workers=1,
                   training={"epochs": 1})
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(job.to_dict()))
    done = subprocess.run([sys.executable, "-m", "finetune_trainer", "--config", str(config)],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("finetune-progress: ")]
    from finetune_trainer.progress import latest_progress

    final = latest_progress(lines)
    assert final.state == "succeeded" and final.model_uri == str(tmp_path / "out" / "module-entry" / "model")
    assert (tmp_path / "out" / "module-entry" / "model" / "_SUCCESS").is_file()
    assert f"job module-entry finished: model at {final.model_uri}" in done.stdout
