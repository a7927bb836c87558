"""Finishing from a real checkpoint of the in-process training loop (loop_harness):
what it fetches from the checkpoint, which data it reads, the data report it takes
from training, the weights it exports, and the Ray options that place it like a
training worker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from core_helpers import make_tiny_model_dir, sentiment_rows, write_rows
from loop_harness import loop_job, run_loop

from finetune_trainer.config import JobConfig, ScalingSpec


def _with_test(job: JobConfig, test: Path | None) -> JobConfig:
    raw = job.to_dict()
    if test is None:
        raw["config"]["data"].pop("test", None)
    else:
        raw["config"]["data"]["test"] = str(test)
    return JobConfig.model_validate(raw)


@pytest.fixture
def trained(tmp_path: Path):
    """A job trained by the real loop on 48 rows (plus one with a missing text and one
    duplicate, so the report has drops), with a test source; its last checkpoint."""
    rows = sentiment_rows(48)
    files = {"model": make_tiny_model_dir(tmp_path / "model", num_labels=2, label_names=["neg", "pos"]),
             "train": write_rows(tmp_path / "train.csv", rows + [{"text": "", "label": "pos"}, rows[3]]),
             "validation": write_rows(tmp_path / "validation.csv", sentiment_rows(10)),
             "test": write_rows(tmp_path / "test.csv", sentiment_rows(12))}
    job = _with_test(loop_job(tmp_path, files["model"], files["train"], files["validation"],
                              training={"epochs": 1}), files["test"])
    from finetune_trainer.tasks import get_task

    # What a single process reading every source reports (the old finishing's way).
    expected = get_task(job.config).load_examples(job.config, shard_eval=False).report.to_dict()
    harness = run_loop(job, tmp_path / "kept")
    checkpoint = harness.checkpoints[max(harness.checkpoints)]
    return job, checkpoint, files, expected


def _outcome(checkpoint: Path):
    from finetune_trainer.ray_train import Outcome

    return Outcome(str(checkpoint), {}, {}, None, [], {})


def test_finishing_fetches_the_weights_and_state_json_only(trained, tmp_path):
    from finetune_trainer.finishing import score_and_export

    job, checkpoint, _, _ = trained
    assert (checkpoint / "trainer_state.pt").is_file()  # the checkpoint does hold it
    work = tmp_path / "work"
    score_and_export(job, _outcome(checkpoint), work, None)
    fetched = {p.name for p in (work / "checkpoint").iterdir()}
    assert "trainer_state.pt" not in fetched
    assert fetched <= {"model.pt", "state.json"}


def test_with_a_test_source_only_that_source_is_read(trained, tmp_path):
    from finetune_trainer.finishing import score_and_export

    job, checkpoint, files, expected = trained
    files["train"].unlink()
    files["validation"].unlink()
    scored = score_and_export(job, _outcome(checkpoint), tmp_path / "work", None)
    # The report is training's, the same as reading every source again would give.
    assert scored["report"] == expected
    assert expected["dropped_missing"] == 1 and expected["dropped_duplicates"] == 1
    assert expected["test"] == 12
    assert set(scored["test"]) >= {"test_loss", "test_accuracy"}
    assert scored["labels"] == ["neg", "pos"]


def test_without_a_test_source_no_data_is_read(trained, tmp_path):
    from finetune_trainer.finishing import score_and_export

    job, checkpoint, files, expected = trained
    job = _with_test(job, None)
    for name in ("train", "validation", "test"):
        files[name].unlink()
    scored = score_and_export(job, _outcome(checkpoint), tmp_path / "work", None)
    assert scored["test"] == {}
    assert scored["report"]["train"] == expected["train"]


def test_a_checkpoint_without_a_data_report_reads_the_data_to_make_one(trained, tmp_path):
    from finetune_trainer.finishing import score_and_export

    job, checkpoint, _, expected = trained
    old = tmp_path / "old-checkpoint"
    shutil.copytree(checkpoint, old)
    meta = json.loads((old / "state.json").read_text())
    del meta["data_report"]
    (old / "state.json").write_text(json.dumps(meta))
    scored = score_and_export(job, _outcome(old), tmp_path / "work", None)
    assert scored["report"] == expected
    assert "test_accuracy" in scored["test"]


def test_the_exported_model_holds_the_checkpoints_weights(trained, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from finetune_trainer.finishing import MODEL_DIR, score_and_export

    job, checkpoint, _, _ = trained
    saved = torch.load(checkpoint / "model.pt", weights_only=True)
    work = tmp_path / "work"
    score_and_export(job, _outcome(checkpoint), work, None)
    exported = AutoModelForSequenceClassification.from_pretrained(work / "out" / MODEL_DIR).state_dict()
    for name, tensor in saved.items():
        assert torch.equal(exported[name], tensor), name
    assert json.loads((work / "out" / MODEL_DIR / "labels.json").read_text()) == ["neg", "pos"]


@pytest.mark.parametrize(("scaling", "expected"), [
    ({"numWorkers": 4, "cpusPerWorker": 8, "gpusPerWorker": 1, "acceleratorType": "A100"},
     {"num_cpus": 8, "num_gpus": 1, "accelerator_type": "A100"}),
    ({"numWorkers": 2, "cpusPerWorker": 3}, {"num_cpus": 3, "num_gpus": 0}),
])
def test_the_finishing_task_asks_for_one_training_workers_resources(scaling, expected):
    from finetune_trainer.finishing import scoring_task_options

    options = scoring_task_options(ScalingSpec.model_validate(scaling))
    assert {k: options[k] for k in ("num_cpus", "num_gpus")} == {"num_cpus": expected["num_cpus"],
                                                                  "num_gpus": expected["num_gpus"]}
    assert options.get("accelerator_type") == expected.get("accelerator_type")
    # A worker that dies is retried a bounded number of times, never for ever.
    assert 0 <= options["max_retries"] <= 3
