"""Runs whose outputs go to a real S3 store (SeaweedFS), including the store going
down in the middle of a run."""

from __future__ import annotations

import json
import threading

import pytest

from tests.trainer.ray.conftest import make_job

pytestmark = pytest.mark.slow


def _s3_files(store, prefix: str) -> set[str]:
    from pyarrow import fs as pafs

    infos = store.filesystem().get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return {i.path[len(prefix) + 1:] for i in infos if i.type == pafs.FileType.File}


def test_outputs_and_checkpoints_go_to_s3(ray_local, tiny_model, intent_data, s3_store, s3_bucket, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from finetune_trainer import storage
    from finetune_trainer.runner import run_job

    job = make_job("s3-run", tiny_model, intent_data, f"s3://{s3_bucket}/jobs",
                   output_extra={"endpoint": s3_store.endpoint})
    result = run_job(job)

    assert result.model_uri == f"s3://{s3_bucket}/jobs/s3-run/model"
    files = _s3_files(s3_store, f"{s3_bucket}/jobs/s3-run")
    for name in ("_SUCCESS", "metrics.json", "README.md", "curves.png", "progress.json", "model/_SUCCESS",
                 "model/config.json", "model/model.safetensors", "model/tokenizer.json"):
        assert name in files, name
    # Ray keeps its checkpoints and experiment state under `ray/<job>/`, next to the outputs.
    assert any(name.startswith("ray/s3-run/checkpoint_") for name in files), sorted(files)
    metrics = json.loads(storage.read_bytes(f"s3://{s3_bucket}/jobs/s3-run/metrics.json", job.config.output))
    assert metrics["test_accuracy"] == result.metrics["test_accuracy"]

    local = storage.download_dir(result.model_uri, tmp_path / "model", job.config.output)
    model = AutoModelForSequenceClassification.from_pretrained(local)
    assert model.config.num_labels == 3


def test_store_down_mid_run_fails_clearly_and_reports_no_model(ray_local, tiny_model, intent_data, s3_store,
                                                                s3_bucket, monkeypatch):
    from finetune_trainer.errors import TrainerError
    from finetune_trainer.runner import run_job

    monkeypatch.setenv("FINETUNE_MAX_FAILURES", "1")
    stopped = threading.Event()
    reports = []

    def stop_store_on_first_report(report, trials) -> None:
        reports.append(report)
        if not stopped.is_set():
            stopped.set()
            s3_store.stop()

    job = make_job("s3-outage", tiny_model, intent_data, f"s3://{s3_bucket}/jobs",
                   output_extra={"endpoint": s3_store.endpoint}, training={"epochs": 6})
    with pytest.raises(TrainerError) as failure:
        run_job(job, progress_callback=stop_store_on_first_report)
    assert stopped.is_set()
    message = str(failure.value)
    assert "store" in message or "s3" in message.lower(), message
    assert reports[-1].state == "failed" and reports[-1].model_uri is None

    s3_store.start()
    files = _s3_files(s3_store, f"{s3_bucket}/jobs/s3-outage")
    assert "_SUCCESS" not in files and "model/_SUCCESS" not in files
