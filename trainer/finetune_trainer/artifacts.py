"""Files a finished run leaves next to its model: metrics, trials, curves, model card.

All are written to a local folder; `storage.upload_dir` then ships the folder, so
these writers stay simple and testable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from finetune_trainer.config import TrainingConfig
from finetune_trainer.tasks import get_task

METRICS_FILE = "metrics.json"
TRIALS_FILE = "trials.json"
CURVES_FILE = "curves.png"
MODEL_CARD_FILE = "README.md"


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(payload), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def write_metrics_json(directory: str | Path, metrics: Mapping[str, Any]) -> Path:
    """`metrics.json`: the final metrics of the run (best trial)."""
    return _write_json(Path(directory) / METRICS_FILE, dict(metrics))


def write_trials_json(directory: str | Path, trials: Sequence[Mapping[str, Any]]) -> Path:
    """`trials.json`: one entry per trial (id, hyperparameters, metrics, status)."""
    return _write_json(Path(directory) / TRIALS_FILE, {"trials": list(trials)})


def curves_figure(history_by_trial: Mapping[str, Sequence[Mapping[str, Any]]], metric: str = "eval_accuracy"):
    """A matplotlib Figure with training loss and `metric` against step, one line per
    trial that has points for it.

    Each history entry is a dict with `step` and any of `loss`, `eval_loss`, `metric`.
    Uses matplotlib's object API (no pyplot), so it needs no display and keeps no
    global figure state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)
    for trial, history in sorted(history_by_trial.items()):
        for axes, key in ((loss_axes, "loss"), (metric_axes, metric)):
            points = [(h["step"], h[key]) for h in history if key in h and h[key] is not None]
            if points:
                steps, values = zip(*points)
                axes.plot(steps, values, marker="." if len(points) < 30 else None, label=str(trial))
    loss_axes.set(title="training loss", xlabel="step", ylabel="loss")
    metric_axes.set(title=metric, xlabel="step", ylabel=metric)
    for axes in (loss_axes, metric_axes):
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def plot_curves(
    history_by_trial: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | Path,
    metric: str = "eval_accuracy",
) -> Path:
    """`curves_figure` saved as a PNG at `path`."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    curves_figure(history_by_trial, metric).savefig(out, format="png")
    return out


# Display names of the hyperparameters every card and metrics.json show.
_LABELS = {
    "training.learningRate": "learning rate",
    "training.optimizer.name": "optimizer",
    "training.scheduler.name": "scheduler",
    "training.batchSize": "batch size (per worker)",
    "training.gradientAccumulationSteps": "gradient accumulation",
    "training.epochs": "epochs",
    "training.maxSteps": "max steps",
    "training.weightDecay": "weight decay",
    "training.dropout": "dropout",
    "training.seed": "seed",
}


def _get_path(config: TrainingConfig, path: str) -> Any:
    node: Any = config.to_dict()
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def trained_hyperparameters(config: TrainingConfig, search: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The hyperparameters of `config` by dotted spec path: the usual ones, then every
    path a sweep searched (read from `config`, so the chosen trial's values)."""
    paths = [p for p in _LABELS if not (p == "training.maxSteps" and config.training.max_steps is None)
             and not (p == "training.epochs" and config.training.max_steps is not None)
             and not (p == "training.dropout" and config.training.dropout is None)]
    paths += [p for p in (search or {}).get("space", {}) if p not in paths]
    return {path: _get_path(config, path) for path in paths}


def search_record(space: Mapping[str, Any], chosen: Mapping[str, Any], *, best_trial: Optional[str], trials: int,
                  metric: str, mode: str) -> dict[str, Any]:
    """What a sweep searched (`space`: path -> a short description of its domain) and
    what it chose, as metrics.json and the card carry it."""
    return {"space": dict(space), "chosen": dict(chosen), "best_trial": best_trial, "trials": trials,
            "metric": metric, "mode": mode}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_model_card(
    directory: str | Path,
    config: TrainingConfig,
    metrics: Mapping[str, Any],
    label_names: Sequence[str],
    *,
    search: Optional[Mapping[str, Any]] = None,
    data_report: Optional[Mapping[str, Any]] = None,
    name: Optional[str] = None,
    sections: Sequence[str] = (),
) -> Path:
    """`README.md` describing the model: base model, data, strategy, hyperparameters
    and metrics, in the Hugging Face model-card layout.

    `config` is the configuration the exported model was trained with (for a sweep,
    the chosen trial's, overrides applied); `search` (see `search_record`) says what a
    sweep searched and what it chose."""
    facts = get_task(config).card(config, label_names)
    strategy = config.strategy.resolved()
    title = name or "Fine-tuned model"
    lines = [
        "---",
        f"base_model: {config.model.source}",
        f"pipeline_tag: {facts.pipeline_tag}",
        f"tags: [finetune-operator, {facts.pipeline_tag}]",
        "---",
        "",
        f"# {title}",
        "",
        f"Fine-tuned from `{config.model.source}` {facts.summary}",
        "",
        "## Data",
        "",
        f"- train: `{config.data.train}`",
        f"- validation: `{config.data.validation}`"
        if config.data.validation
        else f"- validation: {config.data.validation_fraction:.0%} of the training data "
        f"(seed {config.data.shuffle_seed})",
    ]
    if config.data.test:
        lines.append(f"- test: `{config.data.test}`")
    lines += facts.data_lines
    if data_report:
        lines.append(
            "- "
            + ", ".join(
                f"{k.replace('_', ' ')}: {_format(v)}"
                for k, v in data_report.items()
                if not isinstance(v, Mapping)
            )
        )
    lines += ["", "## Strategy", "", f"`{strategy.type}`"]
    block = getattr(strategy, strategy.settings_block, None) if strategy.settings_block else None
    if block is not None:
        lines[-1] += ": " + ", ".join(f"{k}={_format(v)}" for k, v in block.to_dict().items())
    lines += ["", "## Hyperparameters", "", "The values the exported model was trained with.", "",
              "| name | value |", "|---|---|"]
    lines += [f"| {_LABELS.get(k, k)} | {_format(v)} |" for k, v in trained_hyperparameters(config, search).items()]
    if search:
        lines += ["", "## Hyperparameter search", "",
                  f"{search.get('trials', '?')} trials; the exported model is trial `{search.get('best_trial')}`, "
                  f"chosen by `{search.get('metric')}` ({search.get('mode')}).", "",
                  "| parameter | searched | chosen |", "|---|---|---|"]
        chosen = search.get("chosen") or {}
        for path, space in (search.get("space") or {}).items():
            lines.append(f"| {path} | {space} | {_format(chosen.get(path))} |")
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_format(v)} |" for k, v in sorted(metrics.items())]
    if sections:  # the task's own (Task.card_sections), e.g. sample generations
        lines += ["", *sections]
    out = Path(directory) / MODEL_CARD_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


__all__ = [
    "METRICS_FILE",
    "TRIALS_FILE",
    "CURVES_FILE",
    "MODEL_CARD_FILE",
    "curves_figure",
    "plot_curves",
    "search_record",
    "trained_hyperparameters",
    "write_metrics_json",
    "write_model_card",
    "write_trials_json",
]
