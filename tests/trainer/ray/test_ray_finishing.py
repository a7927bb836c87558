"""Finishing on a real local Ray: scoring and export run in a Ray task with one
training worker's resources, not in the driver, and the task writes the model into
storage itself (the model never comes back through the object store)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.trainer.ray.conftest import INTENTS, make_job
from tests.trainer.unit.loop_harness import run_loop

pytestmark = pytest.mark.slow


def test_scoring_and_export_run_in_a_task_sized_like_a_worker(ray_local, tiny_model, intent_data, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from finetune_trainer.finishing import finish_on_worker
    from finetune_trainer.ray_train import Outcome

    job = make_job("finish", tiny_model, intent_data, str(tmp_path / "out"), workers=2,
                   training={"epochs": 1})
    harness = run_loop(job, tmp_path / "kept")  # a real checkpoint of the loop, in this process
    checkpoint = harness.checkpoints[max(harness.checkpoints)]
    model_uri = str(tmp_path / "out" / "finish" / "model")

    scored = finish_on_worker(job, Outcome(str(checkpoint), {}, {}, None, [], {}), None, model_uri)

    assert scored["ran_on"]["pid"] != os.getpid()
    assert scored["ran_on"]["resources"] == {"CPU": job.scaling.cpus_per_worker}
    assert "test_accuracy" in scored["test"] and scored["report"]["test"] == 30
    assert (Path(model_uri) / "_SUCCESS").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(model_uri)
    assert [model.config.id2label[i] for i in range(3)] == INTENTS


def test_an_error_in_the_finishing_task_arrives_as_its_own_message(ray_local, tiny_model, intent_data, tmp_path):
    from finetune_trainer.errors import StorageError
    from finetune_trainer.finishing import finish_on_worker
    from finetune_trainer.ray_train import Outcome

    job = make_job("finish-missing", tiny_model, intent_data, str(tmp_path / "out"))
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(StorageError) as caught:
        finish_on_worker(job, Outcome(str(missing), {}, {}, None, [], {}), None, str(tmp_path / "model"))
    message = str(caught.value)
    assert message.startswith(f"cannot read model.pt of the best checkpoint {missing}")
    assert "Traceback" not in message and "ray::" not in message
