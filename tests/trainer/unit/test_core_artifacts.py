"""Run artifacts: metrics, trials, curves and the model card."""

from __future__ import annotations

import json
import math
from pathlib import Path

from core_helpers import training_config
from finetune_trainer.artifacts import plot_curves, write_metrics_json, write_model_card, write_trials_json


def test_metrics_and_trials_json(tmp_path: Path) -> None:
    path = write_metrics_json(tmp_path, {"eval_loss": 0.5, "eval_f1": math.nan})
    assert json.loads(path.read_text()) == {"eval_loss": 0.5, "eval_f1": None}
    trials = [{"id": "t1", "hyperparameters": {"training.learningRate": 1e-4}, "metrics": {"eval_loss": 0.4}}]
    assert json.loads(write_trials_json(tmp_path, trials).read_text()) == {"trials": trials}


def test_curves_show_one_line_per_trial_with_its_points(tmp_path: Path) -> None:
    from matplotlib.image import imread

    from finetune_trainer.artifacts import curves_figure

    history = {
        "trial-a": [{"step": s, "loss": 1 / s, "eval_accuracy": 0.5 + s / 100} for s in range(1, 20)],
        "trial-b": [{"step": s, "loss": 2 / s} for s in range(1, 20)] + [{"step": 20, "eval_accuracy": 0.7}],
    }
    loss_axes, metric_axes = curves_figure(history).axes
    loss_lines = {line.get_label(): line for line in loss_axes.get_lines()}
    metric_lines = {line.get_label(): line for line in metric_axes.get_lines()}
    assert set(loss_lines) == set(metric_lines) == {"trial-a", "trial-b"}
    assert list(loss_lines["trial-b"].get_ydata()) == [2 / s for s in range(1, 20)]
    assert list(metric_lines["trial-b"].get_xdata()) == [20] and list(metric_lines["trial-b"].get_ydata()) == [0.7]
    assert metric_axes.get_title() == "eval_accuracy" and loss_axes.get_title() == "training loss"
    # A trial with no point for the metric gets no line there, and a None value is skipped.
    lone = curves_figure({"t": [{"step": 1, "loss": 0.5, "eval_accuracy": None}]})
    assert len(lone.axes[0].get_lines()) == 1 and not lone.axes[1].get_lines()

    out = plot_curves(history, tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(out).shape[:2] == (400, 1000)


def test_model_card_names_model_data_strategy_hyperparameters_metrics(tmp_path: Path) -> None:
    config = training_config(
        "s3://bucket/train.csv",
        "s3://bucket/out",
        model={"source": "sentence-transformers/all-MiniLM-L6-v2"},
        strategy={"type": "lora", "lora": {"r": 4}},
        training={"learningRate": 2e-4, "epochs": 2},
    )
    card = write_model_card(
        tmp_path,
        config,
        {"eval_accuracy": 0.91234, "eval_loss": 0.3},
        ["neg", "pos"],
        data_report={"train": 90, "dropped_duplicates": 2},
    ).read_text()
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
    assert "`neg`, `pos`" in card and "s3://bucket/train.csv" in card and "10% of the training data" in card
    assert "`lora`: r=4" in card
    assert "| learning rate | 0.0002 |" in card and "Hyperparameter search" not in card
    assert "| eval_accuracy | 0.9123 |" in card
    assert "dropped duplicates: 2" in card


def test_model_card_shows_the_chosen_trials_values_and_the_search_apart(tmp_path: Path) -> None:
    from finetune_trainer.artifacts import search_record, trained_hyperparameters
    from finetune_trainer.config import with_overrides

    spec = training_config("train.csv", "out", training={"learningRate": 1e-4, "scheduler": {"warmupRatio": 0.1}})
    trained = with_overrides(spec, {"training.learningRate": 2e-4, "training.scheduler.warmupRatio": 0.2})
    search = search_record({"training.learningRate": "grid [3e-05, 0.0002]",
                            "training.scheduler.warmupRatio": "uniform [0, 0.3]"},
                           {"training.learningRate": 2e-4, "training.scheduler.warmupRatio": 0.2},
                           best_trial="t2", trials=2, metric="eval_accuracy", mode="max")
    card = write_model_card(tmp_path, trained, {}, ["a", "b"], search=search).read_text()
    hyper = card.split("## Hyperparameters", 1)[1].split("## Hyperparameter search", 1)[0]
    assert "| learning rate | 0.0002 |" in hyper and "0.0001" not in hyper
    assert "| training.scheduler.warmupRatio | 0.2 |" in hyper
    assert "| training.learningRate | grid [3e-05, 0.0002] | 0.0002 |" in card and "trial `t2`" in card
    values = trained_hyperparameters(trained, search)
    assert values["training.learningRate"] == 2e-4 and values["training.scheduler.warmupRatio"] == 0.2
