"""The driver: run a JobConfig on Ray and leave a finished model in storage.

`run_job` starts one data-parallel `TorchTrainer` (or, with `tune`, a Ray Tune sweep
whose trials each drive their own `TorchTrainer` with `TuneReportCallback`), follows
progress, then takes the best checkpoint, scores the test split once, exports the
model and writes metrics.json, trials.json, curves.png and a model card under
`<output uri>/<job name>/` (the model in `model/`). Everything Ray Train and Tune keep
for resume (checkpoints, experiment state) lives under `<output uri>/<job name>/ray/`,
so the top of the job's folder holds only the documented outputs.

Uploads finish with completion markers, written last: `model/_SUCCESS` when the model
is whole, and `<job>/_SUCCESS` when every output is. A restart with the same name and
output therefore resumes from Ray's checkpoints in the same folder, and a job whose
marker exists is not trained again: its recorded result is returned.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from finetune_trainer import staging, storage
from finetune_trainer.config import JobConfig, SearchDimension, TrainingConfig
from finetune_trainer.errors import StorageError, TrainerError
from finetune_trainer.progress import ProgressReport
from finetune_trainer.telemetry import SINGLE_TRIAL_ID, ProgressTracker, progress_callback
from finetune_trainer.train_loop import (
    FAULT_AFTER_FILE_ENV, FAULT_MARKER_ENV, FAULT_STEP_ENV, MODEL_STATE, STATE_JSON, selection_metric, train_loop_per_worker,
)

log = logging.getLogger(__name__)

MODEL_DIR = "model"
RAY_DIR = "ray"
"""Sub-folder of the job's folder for Ray's own files: the run (or Tune experiment)
named after the job, with its checkpoints and state, e.g. `ray/<job>/checkpoint_.../`."""
MAX_FAILURES_ENV = "FINETUNE_MAX_FAILURES"
DEFAULT_MAX_FAILURES = 2
# Ray Train retries a worker group that cannot start (its placement group never forms,
# e.g. an accelerator type no node has) as a controller failure, for ever by default.
CONTROLLER_FAILURE_LIMIT_ENV = "FINETUNE_CONTROLLER_FAILURE_LIMIT"
DEFAULT_CONTROLLER_FAILURE_LIMIT = 3
# A Tune trial's driver function only waits for its TorchTrainer; it reserves a
# fraction of a CPU so that it does not take a core from the workers.
TRIAL_DRIVER_CPUS = 0.25

ProgressCallback = Callable[[ProgressReport, dict], None]


@dataclass
class RunResult:
    """The outcome of a finished job."""

    name: str
    job_uri: str
    model_uri: str
    metrics: dict[str, Any]
    best_trial: Optional[dict[str, Any]] = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    already_finished: bool = False
    """True when the job had finished before and was not trained again."""


def job_uri(job: JobConfig) -> str:
    return storage.join(job.config.output.uri, job.name)


def _fault_hooks() -> dict[str, str]:
    return {k: os.environ[k] for k in (FAULT_STEP_ENV, FAULT_MARKER_ENV, FAULT_AFTER_FILE_ENV) if os.environ.get(k)}


def _max_failures(variable: str = MAX_FAILURES_ENV, default: int = DEFAULT_MAX_FAILURES) -> int:
    raw = os.environ.get(variable, str(default))
    try:
        return int(raw)
    except ValueError:
        raise TrainerError(f"{variable}={raw!r} is not a whole number (allowed: -1 for unlimited, 0 or more)") \
            from None


# ----------------------------------------------------------------- local Ray


def pin_ray_address() -> None:
    """Ray worker set-up hook: export this cluster's address as RAY_ADDRESS.

    Ray Train's placement-group cleaner queries the State API without an address;
    on a machine running more than one Ray instance that lookup fails ("Found
    multiple active Ray instances") and leaked worker groups can block later trials."""
    import ray

    if not os.environ.get("RAY_ADDRESS"):
        os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def local_ray_init_kwargs() -> dict[str, Any]:
    """Extra `ray.init` arguments for a Ray that this process starts itself."""
    from finetune_trainer.quiet import library_env

    # The workers inherit the driver's choice of library verbosity (quiet unless verbose).
    return {"runtime_env": {"worker_process_setup_hook": "finetune_trainer.runner.pin_ray_address",
                            "env_vars": library_env()}}


# ----------------------------------------------------------------- finished jobs


def load_finished(job: JobConfig) -> Optional[RunResult]:
    """The recorded result when the job's outputs are complete, else None."""
    root = job_uri(job)
    output = job.config.output
    if not storage.is_complete(root, output):
        return None
    metrics = json.loads(storage.read_bytes(storage.join(root, "metrics.json"), output))
    trials: list[dict[str, Any]] = []
    if storage.exists(storage.join(root, "trials.json"), output):
        trials = json.loads(storage.read_bytes(storage.join(root, "trials.json"), output)).get("trials", [])
    best = metrics.get("best_trial")
    best_trial = next((t for t in trials if t.get("id") == best), None) if best else None
    return RunResult(job.name, root, storage.join(root, MODEL_DIR), metrics, best_trial, trials,
                     already_finished=True)


# ----------------------------------------------------------------- Ray plumbing


def _ray_storage(job: JobConfig):
    """(storage_path, storage_filesystem) for Ray Train/Tune RunConfig: the job's `ray/`
    sub-folder, so Ray's files stay apart from the documented outputs."""
    filesystem, path = storage.resolve_filesystem(storage.join(job_uri(job), RAY_DIR), job.config.output)
    if storage.is_s3(job.config.output.uri):
        return path, filesystem
    Path(path).mkdir(parents=True, exist_ok=True)
    return path, None


def _scaling_config(job: JobConfig):
    from ray.train import ScalingConfig

    scaling = job.scaling
    resources = {"CPU": scaling.cpusPerWorker}
    use_gpu = scaling.gpusPerWorker > 0
    if use_gpu:
        resources["GPU"] = scaling.gpusPerWorker
    return ScalingConfig(num_workers=scaling.numWorkers, use_gpu=use_gpu, resources_per_worker=resources,
                         accelerator_type=scaling.acceleratorType)


def _checkpoint_config(config: TrainingConfig):
    from ray.train import CheckpointConfig

    metric, mode = selection_metric(config)
    return CheckpointConfig(num_to_keep=config.output.keepCheckpoints, checkpoint_score_attribute=metric,
                            checkpoint_score_order=mode)


def _make_trainer(job: JobConfig, *, name: str, storage_path: str, filesystem, queue, trial_id: str,
                  overrides: Optional[dict] = None, extra_callbacks: tuple = (), resume_from=None):
    from ray.train import FailureConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    config = job.config
    loop_config = {"job": job.to_dict(), "overrides": dict(overrides or {}), "trial": trial_id,
                   "fault": _fault_hooks(), "start_from": resume_from}
    run_config = RunConfig(
        name=name, storage_path=storage_path, storage_filesystem=filesystem,
        failure_config=FailureConfig(max_failures=_max_failures(), controller_failure_limit=_max_failures(
            CONTROLLER_FAILURE_LIMIT_ENV, DEFAULT_CONTROLLER_FAILURE_LIMIT)),
        checkpoint_config=_checkpoint_config(config),
        callbacks=[*extra_callbacks, progress_callback(queue, trial_id, overrides)],
    )
    backend = TorchConfig(backend="nccl" if job.scaling.gpusPerWorker > 0 else "gloo")
    return TorchTrainer(train_loop_per_worker, train_loop_config=loop_config, torch_config=backend,
                        scaling_config=_scaling_config(job), run_config=run_config)


def _better(a: float, b: float, mode: str) -> bool:
    return a < b if mode == "min" else a > b


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class _Outcome:
    """What training produced: the best checkpoint and every trial's record."""

    checkpoint_path: str
    checkpoint_metrics: dict[str, Any]
    overrides: dict[str, Any]
    best_trial: Optional[str]
    trials: list[dict[str, Any]]
    last_metrics: dict[str, Any]


def _run_single(job: JobConfig, queue, storage_path: str, filesystem) -> _Outcome:
    metric, mode = selection_metric(job.config)
    trainer = _make_trainer(job, name=job.name, storage_path=storage_path, filesystem=filesystem, queue=queue,
                            trial_id=SINGLE_TRIAL_ID)
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    candidates = [(c, m) for c, m in (result.best_checkpoints or []) if _finite(m.get(metric))]
    if candidates:
        best_checkpoint, best_metrics = candidates[0]
        for checkpoint, metrics in candidates[1:]:
            if _better(metrics[metric], best_metrics[metric], mode):
                best_checkpoint, best_metrics = checkpoint, metrics
    elif result.checkpoint is not None:
        best_checkpoint, best_metrics = result.checkpoint, dict(result.metrics or {})
    else:
        raise TrainerError("training finished without a checkpoint; nothing to export")
    last = {}
    if result.best_checkpoints:
        last = max((m for _, m in result.best_checkpoints), key=lambda m: m.get("step", 0))
    return _Outcome(best_checkpoint.path, dict(best_metrics), {}, None, [], dict(last))


# ----------------------------------------------------------------- sweeps


def _domain(dimension: SearchDimension):
    from ray import tune

    if dimension.type == "choice":
        return tune.choice(list(dimension.values))
    if dimension.type == "grid":
        return tune.grid_search(list(dimension.values))
    if dimension.type == "uniform":
        return tune.uniform(dimension.min, dimension.max)
    if dimension.type == "loguniform":
        return tune.loguniform(dimension.min, dimension.max)
    if dimension.type == "randint":
        return tune.randint(int(dimension.min), int(dimension.max))
    raise TrainerError(f"tune.searchSpace: unknown dimension type {dimension.type!r}")  # pragma: no cover


def _search_alg(job: JobConfig, concurrency: int = 0):
    """Tune's search algorithm for the spec, holding the cap on trials at once
    (`concurrency`, 0 for none) itself: Tune ignores `max_concurrent_trials` beside a
    BasicVariantGenerator instance."""
    spec = job.config.tune
    if spec.searchAlgorithm == "bayesian":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch
        import optuna

        searcher = OptunaSearch(metric=spec.metric, mode=spec.mode,
                                sampler=optuna.samplers.TPESampler(seed=job.config.training.seed))
        return ConcurrencyLimiter(searcher, max_concurrent=concurrency) if concurrency else searcher
    from ray.tune.search import BasicVariantGenerator

    # Random and grid: seeded with the training seed, so the same spec samples the
    # same trials in the same order (a rerun, or FIFO against ASHA, compares like with like).
    return BasicVariantGenerator(max_concurrent=concurrency, random_state=job.config.training.seed)


def _scheduler(job: JobConfig):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    spec = job.config.tune
    settings = spec.scheduler
    if settings.name == "asha":
        return ASHAScheduler(time_attr="training_iteration", grace_period=settings.gracePeriod,
                             reduction_factor=settings.reductionFactor, max_t=100_000)
    if settings.name == "pbt":
        from ray import tune

        mutations = {}
        for path, dimension in spec.searchSpace.items():
            if dimension.type in ("choice", "grid"):
                mutations[path] = list(dimension.values)
            elif dimension.type == "loguniform":
                mutations[path] = tune.loguniform(dimension.min, dimension.max)
            elif dimension.type == "uniform":
                mutations[path] = tune.uniform(dimension.min, dimension.max)
            else:
                mutations[path] = tune.randint(int(dimension.min), int(dimension.max))
        return PopulationBasedTraining(time_attr="training_iteration",
                                       perturbation_interval=settings.perturbationInterval,
                                       hyperparam_mutations=mutations)
    return FIFOScheduler()


def concurrent_trials(job: JobConfig, available_cpus: float, available_gpus: float = 0.0) -> int:
    """How many trials fit at once: the spec's bound, else what the resources allow."""
    spec = job.config.tune
    scaling = job.scaling
    per_trial_cpu = scaling.numWorkers * scaling.cpusPerWorker + TRIAL_DRIVER_CPUS
    fit = int(available_cpus // per_trial_cpu) if per_trial_cpu else spec.numTrials
    if scaling.gpusPerWorker > 0:
        fit = min(fit, int(available_gpus // (scaling.numWorkers * scaling.gpusPerWorker)))
    fit = max(1, fit)
    return min(fit, spec.maxConcurrentTrials or fit, trial_count(job))


def _checkpoint_exists(path: str, filesystem) -> bool:
    """Whether Ray still keeps this checkpoint (keepCheckpoints deletes the others)."""
    from pyarrow import fs as pafs

    filesystem = filesystem or pafs.LocalFileSystem()
    try:
        return filesystem.get_file_info(path).type == pafs.FileType.Directory
    except OSError:
        return False


def trial_count(job: JobConfig) -> int:
    """Trials a sweep runs: numTrials, times every grid's size for grid search."""
    spec = job.config.tune
    if spec is None:
        return 1
    count = spec.numTrials
    for dimension in spec.searchSpace.values():
        if dimension.type == "grid":
            count *= len(dimension.values or [])
    return count


def _run_sweep(job: JobConfig, queue, storage_path: str, filesystem) -> _Outcome:
    import ray
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    spec = job.config.tune
    paths = list(spec.searchSpace)
    trials_root = f"{storage_path.rstrip('/')}/{job.name}/trials"

    pbt = spec.scheduler.name == "pbt"

    def trial_driver(config: dict[str, Any]) -> None:
        from finetune_trainer import pbt as pbt_mod

        trial_id = tune.get_context().get_trial_id()
        overrides = {path: config[path] for path in paths if path in config}
        # Under PBT, an exploit restarts this trial from a better trial's checkpoint.
        start = tune.get_checkpoint() if pbt else None

        def make(callbacks: tuple):
            return _make_trainer(job, name=pbt_mod.run_name(trial_id, start), storage_path=trials_root,
                                 filesystem=filesystem, queue=queue, trial_id=trial_id, overrides=overrides,
                                 extra_callbacks=callbacks, resume_from=start)

        if pbt:
            pbt_mod.fit_reporting_to_tune(make)
        else:
            make((TuneReportCallback(),)).fit()

    resources = ray.cluster_resources()
    concurrency = concurrent_trials(job, resources.get("CPU", 1.0), resources.get("GPU", 0.0))
    trainable = tune.with_resources(trial_driver, {"cpu": TRIAL_DRIVER_CPUS})
    param_space = {path: _domain(dimension) for path, dimension in spec.searchSpace.items()}
    tune_config = tune.TuneConfig(metric=spec.metric, mode=spec.mode, search_alg=_search_alg(job, concurrency),
                                  scheduler=_scheduler(job), num_samples=spec.numTrials)
    # Under PBT Tune keeps each trial's newest checkpoints (what an exploit copies).
    tune_checkpoints = tune.CheckpointConfig(num_to_keep=job.config.output.keepCheckpoints) if pbt else None
    run_config = tune.RunConfig(name=job.name, storage_path=storage_path, storage_filesystem=filesystem,
                                failure_config=tune.FailureConfig(max_failures=_max_failures()),
                                checkpoint_config=tune_checkpoints,
                                verbose=0)  # our own progress lines replace Tune's tables
    experiment = f"{storage_path.rstrip('/')}/{job.name}"
    if filesystem is None:
        restorable = tune.Tuner.can_restore(experiment)
    else:
        restorable = tune.Tuner.can_restore(experiment, storage_filesystem=filesystem)
    if restorable:
        log.info("resuming the sweep recorded at %s", experiment)
        tuner = tune.Tuner.restore(experiment, trainable=trainable, param_space=param_space,
                                   resume_unfinished=True, resume_errored=True, storage_filesystem=filesystem)
    else:
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
    grid = tuner.fit()

    trials: list[dict[str, Any]] = []
    # (value, order, checkpoint path, metrics, overrides, trial); later reports win ties,
    # because Ray keeps the newest of equally scored checkpoints.
    candidates: list[tuple[float, int, str, dict, dict, str]] = []
    order = 0
    for result in grid:
        overrides = {path: result.config.get(path) for path in paths}
        frame = result.metrics_dataframe
        name = str((result.metrics or {}).get("trial_id") or (Path(result.path).name if result.path else "unknown"))
        rows = frame.to_dict("records") if frame is not None else []
        best_value = None
        for row in rows:
            value = row.get(spec.metric)
            if not _finite(value):
                continue
            if best_value is None or _better(value, best_value, spec.mode):
                best_value = value
            path = row.get("checkpoint_path")
            if isinstance(path, str) and path:
                order += 1
                candidates.append((float(value), order, path, {k: v for k, v in row.items() if _finite(v)},
                                   overrides, name))
        final = result.metrics or {}
        trials.append({
            "id": name,
            "hyperparameters": overrides,
            "status": "error" if result.error else ("completed" if final.get("final") else "stopped"),
            "reports": len(rows),
            "steps": final.get("step"),
            "best_" + spec.metric: best_value,
            "metrics": {k: v for k, v in final.items() if (k.startswith("eval_") or k in (
                "loss", "step", "epoch", "train_runtime_seconds", "time_total_s")) and _finite(v)},
            "error": str(result.error) if result.error else None,
        })
    sign = 1.0 if spec.mode == "min" else -1.0
    candidates.sort(key=lambda c: (sign * c[0], -c[1]))
    best = next((c for c in candidates if _checkpoint_exists(c[2], filesystem)), None)
    if best is None:
        errors = [t["error"] for t in trials if t["error"]]
        raise TrainerError("no trial of the sweep left a checkpoint with "
                           f"{spec.metric}" + (f"; first error: {errors[0]}" if errors else ""))
    _, _, checkpoint_path, metrics, overrides, trial = best
    return _Outcome(checkpoint_path, metrics, overrides, trial, trials, metrics)


# ----------------------------------------------------------------- finishing


def _score_and_export(job: JobConfig, outcome: _Outcome, work: Path, filesystem) -> tuple[dict[str, Any], list[str]]:
    """Load the best checkpoint, score the test split, export model and tokenizer into
    `work/model`; returns (test metrics, label names) and the data report."""
    import torch
    from ray.train import Checkpoint
    from torch.utils.data import DataLoader

    from finetune_trainer.evaluation import evaluate
    from finetune_trainer.search_space import with_overrides
    from finetune_trainer.strategies import apply_strategy, export_model
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
                                           output=config.output, cache_dir=cache)
    controller = apply_strategy(model, config.strategy, task)
    controller.model.load_state_dict(torch.load(local / MODEL_STATE, map_location="cpu", weights_only=True))
    examples = task.load_examples(config, rank=0, world_size=1, shard_eval=False)
    test_metrics: dict[str, Any] = {}
    if examples.test is not None and len(examples.test):
        dataset = task.dataset(examples.test, tokenizer, config)
        loader = DataLoader(dataset, batch_size=64, collate_fn=task.collator(tokenizer))
        scored = evaluate(controller.model, loader, task=task, label_names=label_names)
        test_metrics = {k.replace("eval_", "test_"): v for k, v in scored.items()}
    export_model(controller.model, config.strategy, work / "out" / MODEL_DIR, tokenizer)
    (work / "out" / MODEL_DIR / "labels.json").write_text(json.dumps(label_names))
    return {"test": test_metrics, "labels": label_names, "report": examples.report.to_dict(),
            "history": meta.get("history", [])}


def _write_outputs(job: JobConfig, outcome: _Outcome, scored: dict[str, Any], tracker: ProgressTracker,
                   meta_dir: Path) -> dict[str, Any]:
    from finetune_trainer import artifacts
    from finetune_trainer.search_space import with_overrides
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
    card_metrics = {k: v for k, v in metrics.items() if _finite(v)}
    artifacts.write_model_card(meta_dir, trained, card_metrics, scored["labels"],
                               search=search, data_report=report, name=job.name)
    return metrics


def _describe(dimension: SearchDimension) -> str:
    """A search dimension in a few words, for the card: `grid [3e-05, 0.0002]`."""
    if dimension.type in ("choice", "grid"):
        return f"{dimension.type} {list(dimension.values or [])}"
    return f"{dimension.type} [{dimension.min:.4g}, {dimension.max:.4g}]"


def _search_record(job: JobConfig, outcome: _Outcome) -> Optional[dict[str, Any]]:
    spec = job.config.tune
    if spec is None:
        return None
    from finetune_trainer import artifacts

    space = {path: _describe(dimension) for path, dimension in spec.searchSpace.items()}
    return artifacts.search_record(space, outcome.overrides, best_trial=outcome.best_trial,
                                   trials=len(outcome.trials), metric=spec.metric, mode=spec.mode)


def _drain(queue, tracker: ProgressTracker, until: threading.Event) -> None:
    """Feed progress events to the tracker until `until` is set and the queue is empty."""
    from ray.util.queue import Empty

    while True:
        try:
            event = queue.get(block=True, timeout=0.5)
        except Empty:
            if until.is_set():
                return
            continue
        tracker.handle(event)


def run_job(job: JobConfig, *, progress_callback: Optional[ProgressCallback] = None, echo: bool = True) -> RunResult:
    """Train `job` on the current Ray cluster (started locally when none is), then
    export the best model and its records. Raises TrainerError with a complete
    message when it cannot."""
    import ray
    from ray.util.queue import Queue

    from finetune_trainer.quiet import configure_libraries

    configure_libraries()
    output = job.config.output
    root = job_uri(job)
    finished = load_finished(job)
    if finished is not None:
        log.info("job %s already finished (completion marker at %s); not training again", job.name, root)
        return finished

    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=True)
        else:
            ray.init(address="local", **local_ray_init_kwargs())
    metric, mode = selection_metric(job.config)
    tracker = ProgressTracker(trials_total=trial_count(job), metric=metric,
                              mode=mode, job_uri=root, output=output, echo=echo, callback=progress_callback)
    storage_path, filesystem = _ray_storage(job)
    queue = Queue(maxsize=100_000, actor_options={"num_cpus": 0})
    done = threading.Event()
    drainer = threading.Thread(target=_drain, args=(queue, tracker, done), name="progress", daemon=True)
    drainer.start()
    try:
        try:
            # Workers load a hub model from the job's staged copy, never from the hub.
            staged = staging.stage_model(job)
            if job.config.tune is not None:
                outcome = _run_sweep(staged, queue, storage_path, filesystem)
            else:
                outcome = _run_single(staged, queue, storage_path, filesystem)
        finally:
            done.set()
            drainer.join(timeout=30)
        with tempfile.TemporaryDirectory(prefix="finetune-out-") as scratch:
            work = Path(scratch)
            scored = _score_and_export(staged, outcome, work, filesystem)
            meta_dir = work / "out" / "meta"
            metrics = _write_outputs(job, outcome, scored, tracker, meta_dir)
            model_uri = storage.join(root, MODEL_DIR)
            # Model first (its own marker), then the records, then the job's marker.
            storage.upload_dir(work / "out" / MODEL_DIR, model_uri, output)
            storage.upload_dir(meta_dir, root, output)
    except TrainerError as err:
        _fail(tracker, str(err))
        raise
    except Exception as err:  # Ray wraps worker errors; surface the cause plainly
        message = _explain(err)
        _fail(tracker, message)
        raise TrainerError(message) from err
    finally:
        try:
            ray.kill(queue.actor)
        except Exception:  # already gone with the cluster
            pass
    best_trial = next((t for t in outcome.trials if t["id"] == outcome.best_trial), None)
    final = {k: metrics.get(k) for k in ("eval_loss", "eval_accuracy", "eval_f1", "test_accuracy", "test_f1")
             if _finite(metrics.get(k))}
    tracker.publish(tracker.build_report(state="succeeded", model_uri=model_uri, final_metrics=final,
                                         message=f"model written to {model_uri}"), force_write=True)
    return RunResult(job.name, root, model_uri, metrics, best_trial, outcome.trials)


_STORAGE_WORDS = ("AWS Error", "curlCode", "Could not connect", "Connection refused", "s3://", "StorageError",
                  "NETWORK_CONNECTION")


def _failure_chain(err: BaseException) -> list[BaseException]:
    """The error, its causes, and the worker/controller failures Ray wraps inside."""
    chain: list[BaseException] = []
    pending: list[BaseException] = [err]
    while pending and len(chain) < 20:
        current = pending.pop(0)
        if current is None or any(current is seen for seen in chain):
            continue
        chain.append(current)
        pending.extend(getattr(current, "worker_failures", {}).values())
        for attribute in ("controller_failure", "cause", "__cause__", "__context__"):
            inner = getattr(current, attribute, None)
            if isinstance(inner, BaseException):
                pending.append(inner)
    return chain


def _explain(err: BaseException) -> str:
    """A one-paragraph reason for a failed run, from Ray's wrapped errors."""
    chain = _failure_chain(err)
    for candidate in chain:
        if isinstance(candidate, TrainerError):
            return str(candidate)
        if type(candidate).__name__ == "WorkerGroupStartupTimeoutError":
            return ("training failed: the Ray Train workers could not be placed: no node offers what each worker "
                    "asks for (CPUs, GPUs, Ray accelerator type; resources.rayAcceleratorType must be a type the "
                    f"GPU nodes have). Ray said: {str(candidate).splitlines()[0][:300]}")
    lines = [line.strip() for e in chain for line in str(e).splitlines() if line.strip()]
    for line in lines:  # a trainer error raised on a worker arrives as text
        for name in ("DataError", "ModelError", "StorageError", "TrainerError"):
            marker = f"finetune_trainer.errors.{name}: "
            if marker in line:
                return line.split(marker, 1)[1]
    storage_lines = [line for line in lines if any(word in line for word in _STORAGE_WORDS)]
    if storage_lines:
        return f"training failed because the output store is unreachable: {storage_lines[-1][:600]}"
    error_lines = [line for line in lines if "Error" in line and not line.startswith(("File ", "Traceback"))]
    reason = error_lines[-1] if error_lines else (lines[0] if lines else type(err).__name__)
    return f"training failed: {reason[:600]}"


def _fail(tracker: ProgressTracker, message: str) -> None:
    try:
        tracker.publish(tracker.build_report(state="failed", message=message), force_write=True)
    except Exception as err:  # reporting the failure must not hide it
        log.warning("could not publish the failure: %s", err)


__all__ = ["MAX_FAILURES_ENV", "MODEL_DIR", "RAY_DIR", "RunResult", "concurrent_trials", "job_uri", "load_finished", "run_job"]
