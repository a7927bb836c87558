"""Finishing a trained job: load the best checkpoint, score the test split once,
export the model (and tokenizer and labels) and write the job's records: metrics.json,
trials.json for a sweep, curves.png and the model card. Everything is written into a
local work folder; the runner uploads it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Optional

from finetune_trainer.checkpointing import MODEL_STATE, STATE_JSON
from finetune_trainer.config import JobConfig, SearchDimension
from finetune_trainer.errors import StorageError
from finetune_trainer.ray_train import Outcome, finite
from finetune_trainer.telemetry import SINGLE_TRIAL_ID, ProgressTracker

MODEL_DIR = "model"
"""Sub-folder of the job's folder (and of the work folder's `out/`) for the model."""


def score_and_export(job: JobConfig, outcome: Outcome, work: Path, filesystem) -> dict[str, Any]:
    """Load the best checkpoint, score the test split, export model and tokenizer into
    `work/out/model`; returns the test metrics, label names, data report and the best
    checkpoint's loss history."""
    import torch
    from ray.train import Checkpoint
    from torch.utils.data import DataLoader

    from finetune_trainer.config import with_overrides
    from finetune_trainer.evaluation import evaluate
    from finetune_trainer.strategies import apply_strategy, export_model, loading_kwargs
    from finetune_trainer.tasks import get_task

    config = with_overrides(job.config, outcome.overrides) if outcome.overrides else job.config
    local = work / "checkpoint"
    checkpoint = Checkpoint(outcome.checkpoint_path, filesystem=filesystem) if filesystem is not None \
        else Checkpoint(outcome.checkpoint_path)
    try:
        checkpoint.to_directory(str(local))
    except OSError as err:
        raise StorageError(f"cannot read the best checkpoint {outcome.checkpoint_path}: {err}") from err
    meta = json.loads((local / STATE_JSON).read_text())
    label_names = meta["label_names"]
    task = get_task(config)
    with tempfile.TemporaryDirectory(prefix="finetune-model-") as cache:
        model, tokenizer = task.load_model(config.model, label_names, config.training.dropout,
                                           output=config.output, cache_dir=cache,
                                           load_kwargs=loading_kwargs(config.strategy))
        base_model = task.load_model(config.model, label_names, output=config.output, cache_dir=cache)[0] \
            if task.wants_base_model_for_card(config) else None
    controller = apply_strategy(model, config.strategy, task)
    controller.model.load_state_dict(torch.load(local / MODEL_STATE, map_location="cpu", weights_only=True))
    examples = task.load_examples(config, rank=0, world_size=1, shard_eval=False)
    test_metrics: dict[str, Any] = {}
    if examples.test is not None and len(examples.test):
        dataset = task.dataset(examples.test, tokenizer, config)
        loader = DataLoader(dataset, batch_size=64, collate_fn=task.collator(tokenizer))
        scored = evaluate(controller.model, loader, task=task, label_names=label_names)
        test_metrics = {k.replace("eval_", "test_"): v for k, v in scored.items()}
    card_sections = task.card_sections(config, controller.model, tokenizer, examples, base_model=base_model)
    export_model(controller.model, config.strategy, work / "out" / MODEL_DIR, tokenizer)
    if label_names:  # a task with classes (a causal LM has none)
        (work / "out" / MODEL_DIR / "labels.json").write_text(json.dumps(label_names))
    return {"test": test_metrics, "labels": label_names, "report": examples.report.to_dict(),
            "history": meta.get("history", []), "card_sections": card_sections}


def write_outputs(job: JobConfig, outcome: Outcome, scored: dict[str, Any], tracker: ProgressTracker,
                  meta_dir: Path) -> dict[str, Any]:
    """Write metrics.json, trials.json (a sweep), curves.png and the model card into
    `meta_dir`; returns the metrics."""
    from finetune_trainer import artifacts
    from finetune_trainer.config import with_overrides
    from finetune_trainer.tasks import get_task

    trained = with_overrides(job.config, outcome.overrides) if outcome.overrides else job.config
    search = _search_record(job, outcome)
    last = outcome.last_metrics
    best = outcome.checkpoint_metrics
    runtime = float(last.get("train_runtime_seconds") or best.get("train_runtime_seconds") or 0.0)
    samples = float(last.get("train_samples") or best.get("train_samples") or 0.0)
    report = scored["report"]
    metrics: dict[str, Any] = {
        "train_samples_per_second": samples / runtime if runtime else None,
        "train_runtime_seconds": runtime,
        "train_samples": samples,
        "steps": best.get("step"),
        **{name: best.get(name) for name in get_task(job.config).eval_metrics},
        "best_trial": outcome.best_trial,
        "best_step": best.get("step"),
        "data": {k: report[k] for k in ("rows_read", "dropped_missing", "dropped_duplicates", "train", "validation",
                                         "test")},
        "labels": scored["labels"],
        "hyperparameters": artifacts.trained_hyperparameters(trained, search),
    }
    if search is not None:
        metrics["search"] = search
    metrics.update(scored["test"])
    artifacts.write_metrics_json(meta_dir, metrics)
    if job.config.tune is not None:
        artifacts.write_trials_json(meta_dir, outcome.trials)
    histories = {trial_id: state.history for trial_id, state in tracker.trials.items() if state.history}
    if not histories:
        histories = {outcome.best_trial or SINGLE_TRIAL_ID: scored["history"]}
    metric = job.config.tune.metric if job.config.tune else get_task(job.config).default_metric
    artifacts.plot_curves(histories, meta_dir / artifacts.CURVES_FILE, metric=metric)
    card_metrics = {k: v for k, v in metrics.items() if finite(v)}
    artifacts.write_model_card(meta_dir, trained, card_metrics, scored["labels"],
                               search=search, data_report=report, name=job.name,
                               sections=scored.get("card_sections") or ())
    return metrics


def _describe(dimension: SearchDimension) -> str:
    """A search dimension in a few words, for the card: `grid [3e-05, 0.0002]`."""
    if dimension.type in ("choice", "grid"):
        return f"{dimension.type} {list(dimension.values or [])}"
    return f"{dimension.type} [{dimension.min:.4g}, {dimension.max:.4g}]"


def _search_record(job: JobConfig, outcome: Outcome) -> Optional[dict[str, Any]]:
    spec = job.config.tune
    if spec is None:
        return None
    from finetune_trainer import artifacts

    space = {path: _describe(dimension) for path, dimension in spec.searchSpace.items()}
    return artifacts.search_record(space, outcome.overrides, best_trial=outcome.best_trial,
                                   trials=len(outcome.trials), metric=spec.metric, mode=spec.mode)



__all__ = ["MODEL_DIR", "score_and_export", "write_outputs"]
