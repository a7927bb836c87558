"""Cluster correctness on a real local Ray (issue 11): a worker group that can never
start fails the run instead of retrying for ever, and a hub-id model is fetched once by
the driver while the workers load the staged copy."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from tests.trainer.ray.conftest import make_job


def test_workers_that_cannot_be_placed_fail_the_run(ray_local, tiny_model, intent_data, tmp_path, monkeypatch):
    from finetune_trainer.errors import TrainerError
    from finetune_trainer.runner import CONTROLLER_FAILURE_LIMIT_ENV, run_job

    # Each try waits this long for its placement group; Ray Train passes RAY_TRAIN_*
    # variables on to its controller.
    monkeypatch.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "2")
    monkeypatch.setenv(CONTROLLER_FAILURE_LIMIT_ENV, "1")
    job = make_job("unplaceable", tiny_model, intent_data, str(tmp_path / "out"), workers=1)
    # A GPU of a type this CPU-only Ray has not: the placement group never forms.
    job = job.model_copy(update={"scaling": job.scaling.model_copy(update={"gpus_per_worker": 1.0,
                                                                           "accelerator_type": "A100"})})
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            run_job(job, echo=False)
        except BaseException as err:  # noqa: BLE001  (handed to the test thread)
            outcome["error"] = err

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout=180)
    assert not runner.is_alive(), "the run still waits for workers that can never start"
    assert isinstance(outcome.get("error"), TrainerError), outcome
    assert "could not be placed" in str(outcome["error"]) and "rayAcceleratorType" in str(outcome["error"])


def test_a_bad_limit_is_a_clear_error(monkeypatch):
    from finetune_trainer.errors import TrainerError
    from finetune_trainer.ray_train import CONTROLLER_FAILURE_LIMIT_ENV, max_failures as _max_failures

    monkeypatch.setenv(CONTROLLER_FAILURE_LIMIT_ENV, "three")
    with pytest.raises(TrainerError, match=CONTROLLER_FAILURE_LIMIT_ENV):
        _max_failures(CONTROLLER_FAILURE_LIMIT_ENV, 3)


def test_workers_train_from_the_copy_the_driver_staged(ray_local, tiny_model, intent_data, tmp_path, monkeypatch):
    """Only this (driver) process can reach the stand-in hub; the workers run offline in
    their own processes, so they succeed only by loading the staged copy."""
    import huggingface_hub

    from finetune_trainer.runner import run_job

    downloads: list[str] = []

    def snapshot_download(repo_id, *, local_dir=None, local_files_only=False, **_):
        if local_files_only or repo_id != "acme/intents-base":
            raise huggingface_hub.errors.LocalEntryNotFoundError(repo_id)
        downloads.append(repo_id)
        shutil.copytree(tiny_model, local_dir, dirs_exist_ok=True)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("FINETUNE_ALLOW_DOWNLOADS", raising=False)
    job = make_job("hub", tiny_model, intent_data, str(tmp_path / "out"), workers=2,
                   training={"epochs": 1, "evaluation": {"every": 8, "unit": "step"},
                             "checkpoint": {"every": 8, "unit": "step"}})
    model = job.config.model.model_copy(update={"source": "acme/intents-base", "allow_download": True})
    job = job.model_copy(update={"config": job.config.model_copy(update={"model": model})})
    result = run_job(job, echo=False)
    assert downloads == ["acme/intents-base"]  # once, for two workers and the export
    assert (tmp_path / "out" / "hub" / "base-model" / "config.json").is_file()
    assert (Path(result.model_uri) / "config.json").is_file()
    card = (tmp_path / "out" / "hub" / "README.md").read_text()
    assert "acme/intents-base" in card  # the card names the model the user asked for
    assert json.loads((tmp_path / "out" / "hub" / "metrics.json").read_text())["steps"]
