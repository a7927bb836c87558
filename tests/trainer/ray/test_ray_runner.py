"""Real Ray Train / Tune runs of the runner on a tiny BERT: outputs, sweeps, early
stopping, a worker killed mid-run, and restarts of interrupted and finished jobs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.trainer.ray.conftest import INTENTS, make_job
from tests.trainer.ray.faults import ExitOnceAfterStep

pytestmark = pytest.mark.slow

# What the README documents at the top of `<output>/<job>/` (trials.json for sweeps).
DOCUMENTED_OUTPUTS = {"model", "metrics.json", "README.md", "curves.png", "progress.json", "_SUCCESS"}


class Reports:
    """Collects the driver's progress reports and per-trial histories; touches
    `checkpoint_seen` once the driver has seen a report with a checkpoint."""

    def __init__(self, checkpoint_seen: Path | None = None) -> None:
        self.reports = []
        self.trials = {}
        self.checkpoint_seen = checkpoint_seen

    def __call__(self, report, trials) -> None:
        self.reports.append(report)
        self.trials = trials
        if self.checkpoint_seen is not None and any(t.checkpoints for t in trials.values()):
            self.checkpoint_seen.touch()

    def history(self, trial: str = "run") -> list[dict]:
        return self.trials[trial].history


def test_single_run_writes_a_loadable_model_and_records(ray_local, tiny_model, intent_data, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from finetune_trainer.runner import run_job

    reports = Reports()
    job = make_job("single", tiny_model, intent_data, str(tmp_path / "out"))
    result = run_job(job, progress_callback=reports)

    root = tmp_path / "out" / "single"
    assert result.model_uri == str(root / "model")
    for name in ("metrics.json", "README.md", "curves.png", "progress.json", "_SUCCESS", "model/_SUCCESS"):
        assert (root / name).is_file(), name
    metrics = json.loads((root / "metrics.json").read_text())
    for key in ("train_samples_per_second", "train_runtime_seconds", "eval_loss", "eval_accuracy", "eval_f1",
                "test_accuracy", "best_trial", "data"):
        assert key in metrics, key
    assert {k: metrics["data"][k] for k in ("train", "validation", "test", "dropped_missing")} == \
        {"train": 96, "validation": 30, "test": 30, "dropped_missing": 0}
    assert metrics["train_samples_per_second"] > 0
    # 96 examples over 2 workers, batch 8, 2 epochs: 6 steps per epoch, 12 in all.
    steps = [h["step"] for h in reports.history()]
    assert steps == [4, 8, 12]
    # Every training row is used in every epoch (the hash shards are evened out first).
    assert metrics["train_samples"] == 2 * 96
    assert reports.reports[-1].state == "succeeded" and reports.reports[-1].model_uri == result.model_uri
    assert json.loads((root / "progress.json").read_text())["state"] == "succeeded"

    model = AutoModelForSequenceClassification.from_pretrained(root / "model")
    tokenizer = AutoTokenizer.from_pretrained(root / "model")
    assert [model.config.id2label[i] for i in range(3)] == INTENTS
    # The recorded test accuracy is the exported model's own on the 30 test rows.
    import csv

    import torch

    with open(intent_data["test"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    model.eval()
    with torch.no_grad():
        batch = tokenizer([r["text"] for r in rows], padding=True, truncation=True, max_length=32,
                          return_tensors="pt")
        predicted = model(**batch).logits.argmax(-1).tolist()
    correct = sum(model.config.id2label[p] == r["label"] for p, r in zip(predicted, rows))
    assert metrics["test_accuracy"] == pytest.approx(correct / len(rows))

    # The documented layout: outputs at the top, everything of Ray's under ray/<job>/.
    assert {p.name for p in root.iterdir()} == DOCUMENTED_OUTPUTS | {"ray"}
    ray_run = root / "ray" / "single"
    checkpoints_before = sorted(p.name for p in ray_run.glob("checkpoint_*"))
    assert checkpoints_before
    # The data report was made by the workers at train time and travels in state.json
    # (finishing does not read the training data again).
    checkpoint_dirs = sorted(p for p in ray_run.glob("checkpoint_*") if p.is_dir())
    meta = json.loads((checkpoint_dirs[-1] / "state.json").read_text())
    assert {k: meta["data_report"][k] for k in metrics["data"]} == metrics["data"]

    # A finished job is not trained again: its recorded result comes back.
    again = run_job(job, progress_callback=reports)
    assert again.already_finished and again.metrics == result.metrics
    assert sorted(p.name for p in ray_run.glob("checkpoint_*")) == checkpoints_before


def test_two_trial_sweep_keeps_every_trial_and_picks_the_best(ray_local, tiny_model, intent_data, tmp_path,
                                                              caplog):
    from finetune_trainer.runner import run_job

    tune = {"searchSpace": {"training.learningRate": {"type": "grid", "values": [2e-2, 1e-6]}},
            "searchAlgorithm": "grid", "numTrials": 1, "metric": "eval_loss", "mode": "min"}
    job = make_job("sweep", tiny_model, intent_data, str(tmp_path / "out"), tune=tune)
    result = run_job(job)

    root = tmp_path / "out" / "sweep"
    trials = json.loads((root / "trials.json").read_text())["trials"]
    assert sorted(t["hyperparameters"]["training.learningRate"] for t in trials) == [1e-6, 2e-2]
    best = min(trials, key=lambda t: t["best_eval_loss"])
    assert result.metrics["best_trial"] == best["id"] == result.best_trial["id"]
    assert result.metrics["eval_loss"] == pytest.approx(best["best_eval_loss"])
    assert (root / "model" / "_SUCCESS").is_file()
    assert {p.name for p in root.iterdir()} == DOCUMENTED_OUTPUTS | {"trials.json", "ray"}

    # The card, metrics.json and the summary show what the exported model was trained
    # with (the chosen trial's rate, not the spec's 5e-3) and, apart, what was searched.
    chosen = best["hyperparameters"]["training.learningRate"]
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["hyperparameters"]["training.learningRate"] == chosen
    assert metrics["search"]["chosen"] == {"training.learningRate": chosen}
    assert metrics["search"]["best_trial"] == best["id"]
    card = (root / "README.md").read_text()
    trained_with = card.split("## Hyperparameters", 1)[1].split("## Hyperparameter search", 1)[0]
    assert f"| learning rate | {chosen:.4g} |" in trained_with
    assert "| learning rate | 0.005 |" not in card
    assert f"| training.learningRate | grid [0.02, 1e-06] | {chosen:.4g} |" in card
    from rich.console import Console

    from finetune_operator.cli.run import summary_table

    console = Console(width=200, record=True)
    console.print(summary_table(result, 1.0))
    summary = console.export_text()
    assert re.search(rf"trained with training\.learningRate\s+│ {re.escape(f'{chosen:.4g}')}\s", summary)
    assert re.search(r"searched training\.learningRate\s+│ grid \[0\.02, 1e-06\]", summary)

    # Resume goes through the new location: with the outputs gone, a rerun restores
    # the Tune experiment from ray/<job>/, trains no trial again, and exports afresh.
    for marker in (root / "_SUCCESS", root / "model" / "_SUCCESS"):
        marker.unlink()
    assert (root / "ray" / "sweep").is_dir()
    reports = Reports()
    with caplog.at_level("INFO", logger="finetune_trainer.sweeps"):
        again = run_job(job, progress_callback=reports)
    assert f"resuming the sweep recorded at {root / 'ray' / 'sweep'}" in caplog.text
    assert not again.already_finished and (root / "_SUCCESS").is_file()
    assert again.metrics["best_trial"] == best["id"]
    assert all(not state.history for state in reports.trials.values())


def test_early_stopping_stops_before_the_step_budget(ray_local, tiny_model, intent_data, tmp_path):
    from finetune_trainer.runner import run_job

    reports = Reports()
    # minDelta so large that nothing counts as an improvement: stop at the 2nd evaluation.
    training = {"epochs": 4, "earlyStopping": {"metric": "eval_loss", "mode": "min", "patience": 1,
                                               "minDelta": 100.0}}
    job = make_job("early", tiny_model, intent_data, str(tmp_path / "out"), training=training)
    result = run_job(job, progress_callback=reports)
    history = reports.history()
    assert [h["step"] for h in history] == [4, 8]
    assert result.metrics["steps"] == 8  # of a 24-step budget


def test_worker_killed_mid_run_resumes_from_its_checkpoint(ray_local, tiny_model, intent_data, tmp_path,
                                                          monkeypatch):
    from finetune_trainer.runner import run_job

    marker = tmp_path / "fault-happened"
    fault = ExitOnceAfterStep(step=6, marker=str(marker), after_file=str(tmp_path / "checkpoint-seen"))
    reports = Reports(tmp_path / "checkpoint-seen")
    job = make_job("fault", tiny_model, intent_data, str(tmp_path / "out"))
    result = run_job(job, progress_callback=reports, loop_hooks=fault)

    assert marker.is_file(), "the injected fault did not happen"
    history = reports.history()
    # Step 4 was checkpointed; the worker died after step 6; the new worker group
    # continued from step 4, so steps 8 and 12 follow and nothing restarts from 0.
    assert [h["step"] for h in history] == [4, 8, 12]
    latest = reports.trials["run"].latest
    assert latest["resumed_from_step"] == 4
    assert "resumed from checkpoint at step 4" in [r.message for r in reports.reports]
    assert result.metrics["steps"] == 12


def test_interrupted_job_resumes_when_started_again(ray_local, tiny_model, intent_data, tmp_path, monkeypatch):
    from finetune_trainer.errors import TrainerError
    from finetune_trainer.runner import run_job

    job = make_job("interrupted", tiny_model, intent_data, str(tmp_path / "out"))
    fault = ExitOnceAfterStep(step=6, marker=str(tmp_path / "fault"), after_file=str(tmp_path / "checkpoint-seen"))
    monkeypatch.setenv("FINETUNE_MAX_FAILURES", "0")
    with pytest.raises(TrainerError, match="training failed"):
        run_job(job, progress_callback=Reports(tmp_path / "checkpoint-seen"), loop_hooks=fault)
    assert (tmp_path / "fault").is_file(), "the injected fault did not happen"
    assert not (tmp_path / "out" / "interrupted" / "_SUCCESS").exists()

    # Started again without the fault: the run continues from its step-4 checkpoint.
    reports = Reports()
    result = run_job(job, progress_callback=reports)
    history = reports.history()
    assert [h["step"] for h in history] == [8, 12]
    assert reports.trials["run"].latest["resumed_from_step"] == 4
    assert not result.already_finished and (tmp_path / "out" / "interrupted" / "_SUCCESS").is_file()
