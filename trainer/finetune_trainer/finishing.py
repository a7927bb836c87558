"""Finishing a trained job: load the best checkpoint, score the test split once,
export the model (and tokenizer and labels) and write the job's records: metrics.json,
trials.json for a sweep, curves.png and the model card.

Where it runs. Scoring and export need what one training worker needs (the model in
memory, a GPU when training had one), so `finish_on_worker` runs them as a Ray task
with one training worker's resources (`scoring_task_options`: its CPUs, GPUs and
accelerator type), never on the driver. On KubeRay the driver is the head pod, which
has a CPU and a few GiB and advertises no CPUs to Ray (`num-cpus: 0`), so the task
lands on a worker node; with a local Ray (`finetune run`) it is a task of the same
process tree, and the same code runs. The task writes the model into storage itself
(`model/` with its `_SUCCESS`) and returns only a small dict: the model never travels
through the object store. Ray Train V2 leaves no worker group behind after `fit`, and
Tune's trials have ended when finishing starts, so the task finds a worker's room.

What it reads.
- From the checkpoint only `model.pt` and `state.json`; the trainer state
  (optimizer, schedule, RNG: often twice the model's size) is never fetched.
- From the data only `data.test`. The data report (rows read, dropped, split sizes,
  label counts) was computed by the workers when training read the data and is
  stored in every checkpoint's `state.json`; the test split is a source of its own
  (it is never carved out of `data.train`), so without `data.test` no data is read.
  Checkpoints written before the report was stored fall back to reading every source.

Memory: one model, built from its config or staged weights, takes the checkpoint's
weights (memory-mapped, dropped once loaded); it is scored under `torch.no_grad` and,
for LoRA with `mergeOnExport`, merged in place rather than copied.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Optional

from finetune_trainer.checkpointing import MODEL_STATE, STATE_JSON
from finetune_trainer.config import JobConfig, ScalingSpec, SearchDimension
from finetune_trainer.errors import StorageError, TrainerError
from finetune_trainer.ray_train import Outcome, finite
from finetune_trainer.telemetry import SINGLE_TRIAL_ID, ProgressTracker

log = logging.getLogger(__name__)

MODEL_DIR = "model"

CONFIG_FINGERPRINT = "config_fingerprint"
"""metrics.json's key for `config_fingerprint(job.config)` of the run that wrote it."""


def config_fingerprint(config: Any) -> str:
    """A digest of what decides the trained model: the training configuration without
    its output location (moving or re-crediting the output changes no weight)."""
    import hashlib

    document = config.to_dict()
    document.pop("output", None)
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
"""Sub-folder of the job's folder (and of the work folder's `out/`) for the model."""
EXPORT_FILES = (MODEL_STATE, STATE_JSON)
"""The checkpoint's files that finishing fetches (not the trainer state)."""
SCORING_RETRIES = 1
"""Retries of the finishing task when its worker dies (a lost node); a task that runs
out of memory on a worker-sized node would only do so again."""


def scoring_task_options(scaling: ScalingSpec) -> dict[str, Any]:
    """`ray.remote` options that place the finishing task like one training worker."""
    options: dict[str, Any] = {"num_cpus": scaling.cpus_per_worker, "num_gpus": scaling.gpus_per_worker,
                               "max_retries": SCORING_RETRIES}
    if scaling.accelerator_type:
        options["accelerator_type"] = scaling.accelerator_type
    return options


def finish_on_worker(job: JobConfig, outcome: Outcome, filesystem, model_uri: str) -> dict[str, Any]:
    """Score and export in a Ray task sized like one training worker; the task uploads
    the model to `model_uri`. Returns what `score_and_export` returns, plus `ran_on`
    (the task's node, process and assigned resources, for the log and the tests)."""
    import ray
    from ray.exceptions import RayTaskError

    task = ray.remote(_finish_task).options(**scoring_task_options(job.scaling))
    try:
        scored = ray.get(task.remote(job, outcome, filesystem, model_uri))
    except RayTaskError as err:  # our own error inside: its message, not Ray's traceback
        cause = getattr(err, "cause", None)
        if isinstance(cause, TrainerError):
            raise cause from None
        raise
    log.debug("scored and exported on node %s with %s", scored["ran_on"]["node_id"], scored["ran_on"]["resources"])
    return scored


def _finish_task(job: JobConfig, outcome: Outcome, filesystem, model_uri: str) -> dict[str, Any]:
    """The body of the finishing task: score, export, upload the model."""
    import os

    import ray

    from finetune_trainer import storage
    from finetune_trainer.quiet import configure_libraries

    configure_libraries()
    with tempfile.TemporaryDirectory(prefix="finetune-finish-") as scratch:
        work = Path(scratch)
        scored = score_and_export(job, outcome, work, filesystem)
        # `filesystem` (Ray's storage, the same store as the outputs) was built on the
        # driver with its credentials; a task process may not have them in its environment.
        storage.upload_dir(work / "out" / MODEL_DIR, model_uri, job.config.output, filesystem=filesystem)
    context = ray.get_runtime_context()
    scored["ran_on"] = {"node_id": context.get_node_id(), "pid": os.getpid(),
                        "resources": context.get_assigned_resources()}
    return scored


def fetch_for_export(checkpoint_path: str, filesystem, local: Path) -> Path:
    """Copy `EXPORT_FILES` of the checkpoint at `checkpoint_path` (on `filesystem`, or
    the path's own when None) into the folder `local`."""
    from pyarrow import fs as pafs

    if filesystem is None:
        filesystem, checkpoint_path = pafs.FileSystem.from_uri(checkpoint_path) if "://" in checkpoint_path \
            else (pafs.LocalFileSystem(), checkpoint_path)
    local.mkdir(parents=True, exist_ok=True)
    for name in EXPORT_FILES:
        try:
            pafs.copy_files(f"{checkpoint_path.rstrip('/')}/{name}", str(local / name),
                            source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem())
        except OSError as err:
            raise StorageError(f"cannot read {name} of the best checkpoint {checkpoint_path}: {err}") from err
    return local


def score_and_export(job: JobConfig, outcome: Outcome, work: Path, filesystem) -> dict[str, Any]:
    """Load the best checkpoint, score the test split, export model and tokenizer into
    `work/out/model`; returns the test metrics, label names, data report and the best
    checkpoint's loss history. Runs where it is called (`finish_on_worker` calls it on
    a worker)."""
    import torch
    from torch.utils.data import DataLoader

    from finetune_trainer.config import with_overrides
    from finetune_trainer.evaluation import evaluate
    from finetune_trainer.strategies import apply_strategy, export_model, loading_kwargs
    from finetune_trainer.tasks import get_task

    config = with_overrides(job.config, outcome.overrides) if outcome.overrides else job.config
    local = fetch_for_export(outcome.checkpoint_path, filesystem, work / "checkpoint")
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
    weights = torch.load(local / MODEL_STATE, map_location="cpu", weights_only=True, mmap=True)
    controller.model.load_state_dict(weights)
    del weights
    (local / MODEL_STATE).unlink()
    model = controller.model
    model.eval()
    report = meta.get("data_report")
    examples = None
    if report is None:  # a checkpoint from before the report was stored with it
        log.info("the checkpoint has no data report; reading the data again to make one")
        examples = task.load_examples(config, rank=0, world_size=1, shard_eval=False)
        report, test = examples.report.to_dict(), examples.test
    else:
        test = task.load_test(config, label_names)
    test_metrics: dict[str, Any] = {}
    if test is not None and len(test):
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device)
        dataset = task.dataset(test, tokenizer, config)
        loader = DataLoader(dataset, batch_size=64, collate_fn=task.collator(tokenizer))
        with torch.no_grad():
            scored = evaluate(model, loader, device, task=task, label_names=label_names)
        test_metrics = {k.replace("eval_", "test_"): v for k, v in scored.items()}
    card_sections: list[str] = []
    if base_model is not None:  # the task writes generations on held-out prompts into the card (opt-in)
        if examples is None:
            examples = task.load_examples(config, rank=0, world_size=1, shard_eval=False)
        card_sections = task.card_sections(config, model, tokenizer, examples, base_model=base_model)
        del base_model
    export_model(model, config.strategy, work / "out" / MODEL_DIR, tokenizer, keep_model=False)
    if label_names:  # a task with classes (a causal LM has none)
        (work / "out" / MODEL_DIR / "labels.json").write_text(json.dumps(label_names))
    return {"test": test_metrics, "labels": label_names, "report": report, "history": meta.get("history", []),
            "card_sections": card_sections}


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
        "data": {k: report[k] for k in ("rows_read", "dropped_missing", "dropped_duplicates", "skipped_unreadable",
                                         "train", "validation", "test")},
        "labels": scored["labels"],
        "hyperparameters": artifacts.trained_hyperparameters(trained, search),
        CONFIG_FINGERPRINT: config_fingerprint(job.config),
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

    space = {path: _describe(dimension) for path, dimension in spec.search_space.items()}
    return artifacts.search_record(space, outcome.overrides, best_trial=outcome.best_trial,
                                   trials=len(outcome.trials), metric=spec.metric, mode=spec.mode)



__all__ = ["EXPORT_FILES", "MODEL_DIR", "fetch_for_export", "finish_on_worker", "score_and_export",
           "scoring_task_options", "write_outputs"]
