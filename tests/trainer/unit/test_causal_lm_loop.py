"""The real per-worker loop on a causal-LM job (loop_harness): a resumed run continues
exactly (with LoRA and packing), the reports carry eval_loss and eval_perplexity and
count real tokens, and training lowers the validation loss."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
from causal_helpers import chat_records, make_tiny_causal_lm, write_jsonl
from loop_harness import run_loop


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny Llama and 32 chat records: 4 batches of 8 per epoch."""
    root = tmp_path_factory.mktemp("causal-loop")
    return {"model": make_tiny_causal_lm(root / "model"),
            "train": write_jsonl(root / "train.jsonl", chat_records(32)),
            "validation": write_jsonl(root / "validation.jsonl", chat_records(40)[32:])}


def _job(tmp: Path, files, causal: Optional[dict[str, Any]] = None, strategy: Optional[dict[str, Any]] = None,
         training: Optional[dict[str, Any]] = None):
    from finetune_trainer.config import JobConfig

    config: dict[str, Any] = {
        "model": {"source": str(files["model"]), "task": "causal-lm"},
        "data": {"train": str(files["train"]), "validation": str(files["validation"]), "maxSeqLength": 64},
        "training": {"epochs": 2, "batchSize": 8, "learningRate": 3e-3, "checkpoint": {"every": 2, "unit": "step"},
                     "evaluation": {"every": 2, "unit": "step"}, **(training or {})},
        "output": {"uri": str(tmp / "out")},
    }
    if causal:
        config["causalLm"] = causal
    if strategy:
        config["strategy"] = strategy
    return JobConfig.model_validate({"name": "causal", "config": config,
                                     "scaling": {"numWorkers": 1, "cpusPerWorker": 1}})


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.allclose(a[name], b[name], rtol=0, atol=1e-6)]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_a_resumed_causal_lm_run_continues_exactly(tmp_path, files):
    job = _job(tmp_path, files)
    whole = run_loop(job, tmp_path / "whole")
    assert sorted(whole.checkpoints) == [2, 4, 6, 8]
    resumed = run_loop(job, tmp_path / "resumed", start=whole.checkpoints[2])
    assert [r["step"] for r in resumed.reports] == [4, 6, 8]
    _assert_same_weights(resumed.final_weights(), whole.final_weights())
    first, last = whole.reports[0], whole.reports[-1]
    assert {"eval_loss", "eval_perplexity"} <= set(last)
    assert last["eval_perplexity"] == pytest.approx(math.exp(last["eval_loss"]))
    assert last["eval_loss"] < first["eval_loss"]  # it learns the answers


def test_a_resumed_packed_lora_run_continues_exactly(tmp_path, files):
    job = _job(tmp_path, files, causal={"packing": True}, strategy={"type": "lora", "lora": {"r": 4}},
               training={"batchSize": 2, "gradientCheckpointing": True})
    whole = run_loop(job, tmp_path / "whole")
    steps = sorted(whole.checkpoints)
    assert len(steps) >= 2
    resumed = run_loop(job, tmp_path / "resumed", start=whole.checkpoints[steps[0]])
    assert [r["step"] for r in resumed.reports] == [r["step"] for r in whole.reports][1:]
    _assert_same_weights(resumed.final_weights(), whole.final_weights())
    assert all(r["tokens_per_second"] > 0 for r in whole.reports)  # packs count their real tokens


def test_finishing_exports_a_plain_model_scores_the_test_split_and_writes_sample_answers(tmp_path, files):
    from transformers import AutoModelForCausalLM

    from finetune_trainer.finishing import MODEL_DIR, score_and_export, write_outputs
    from finetune_trainer.ray_train import Outcome
    from finetune_trainer.telemetry import ProgressTracker

    job = _job(tmp_path, files, causal={"sampleGenerations": 2, "maxNewTokens": 4},
               strategy={"type": "lora", "lora": {"r": 4}}, training={"maxSteps": 2})
    job = job.model_copy(update={"config": job.config.model_copy(
        update={"data": job.config.data.model_copy(update={"test": str(files["validation"])})})})
    harness = run_loop(job, tmp_path / "run")
    best = max(harness.checkpoints)
    outcome = Outcome(checkpoint_path=str(harness.checkpoints[best]), checkpoint_metrics=harness.reports[-1],
                      overrides={}, best_trial=None, trials=[], last_metrics=harness.reports[-1])
    scored = score_and_export(job, outcome, tmp_path / "work", None)
    assert set(scored["test"]) == {"test_loss", "test_perplexity"}
    assert scored["test"]["test_loss"] == pytest.approx(harness.reports[-1]["eval_loss"], rel=1e-5)  # same rows
    model_dir = tmp_path / "work" / "out" / MODEL_DIR
    assert not (model_dir / "labels.json").exists() and not (model_dir / "adapter_config.json").exists()
    assert type(AutoModelForCausalLM.from_pretrained(model_dir)).__name__ == "LlamaForCausalLM"
    tracker = ProgressTracker(trials_total=1, metric="eval_loss", mode="min", job_uri=str(tmp_path), echo=False)
    metrics = write_outputs(job, outcome, scored, tracker, tmp_path / "meta")
    assert {"eval_loss", "eval_perplexity", "test_perplexity"} <= set(metrics)
    card = (tmp_path / "meta" / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "## Sample generations" in card
    assert card.count("<\\|assistant\\|> |") == 2  # two prompts, each ending at the answer
