"""Ray Tune sweeps: the search space, search algorithm and scheduler of a `tune` spec,
how many trials run at once, and the sweep itself, whose trials each drive their own
`TorchTrainer` (see `ray_train`) and report to Tune through `TuneReportCallback`.

The best checkpoint of a sweep is the best-scoring report of any trial whose
checkpoint Ray still keeps.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from finetune_trainer.config import JobConfig, SearchDimension
from finetune_trainer.errors import TrainerError
from finetune_trainer.loop.hooks import LoopHooks
from finetune_trainer.ray_train import Outcome, better, finite, make_trainer, max_failures

log = logging.getLogger(__name__)

# A Tune trial's driver function only waits for its TorchTrainer; it reserves a
# fraction of a CPU so that it does not take a core from the workers.
TRIAL_DRIVER_CPUS = 0.25


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
    if spec.search_algorithm == "bayesian":
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
        return ASHAScheduler(time_attr="training_iteration", grace_period=settings.grace_period,
                             reduction_factor=settings.reduction_factor, max_t=100_000)
    if settings.name == "pbt":
        from ray import tune

        mutations = {}
        for path, dimension in spec.search_space.items():
            if dimension.type in ("choice", "grid"):
                mutations[path] = list(dimension.values)
            elif dimension.type == "loguniform":
                mutations[path] = tune.loguniform(dimension.min, dimension.max)
            elif dimension.type == "uniform":
                mutations[path] = tune.uniform(dimension.min, dimension.max)
            else:
                mutations[path] = tune.randint(int(dimension.min), int(dimension.max))
        return PopulationBasedTraining(time_attr="training_iteration",
                                       perturbation_interval=settings.perturbation_interval,
                                       hyperparam_mutations=mutations)
    return FIFOScheduler()


def concurrent_trials(job: JobConfig, available_cpus: float, available_gpus: float = 0.0) -> int:
    """How many trials fit at once: the spec's bound, else what the resources allow."""
    spec = job.config.tune
    scaling = job.scaling
    per_trial_cpu = scaling.num_workers * scaling.cpus_per_worker + TRIAL_DRIVER_CPUS
    fit = int(available_cpus // per_trial_cpu) if per_trial_cpu else spec.num_trials
    if scaling.gpus_per_worker > 0:
        fit = min(fit, int(available_gpus // (scaling.num_workers * scaling.gpus_per_worker)))
    fit = max(1, fit)
    return min(fit, spec.max_concurrent_trials or fit, trial_count(job))


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
    count = spec.num_trials
    for dimension in spec.search_space.values():
        if dimension.type == "grid":
            count *= len(dimension.values or [])
    return count


def _trial_driver(job: JobConfig, queue, trials_root: str, filesystem, hooks: Optional[LoopHooks]):
    """The function Tune runs per trial: build and fit the trial's own TorchTrainer."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    paths = list(job.config.tune.search_space)
    pbt = job.config.tune.scheduler.name == "pbt"

    def trial_driver(config: dict[str, Any]) -> None:
        from finetune_trainer import pbt as pbt_mod

        trial_id = tune.get_context().get_trial_id()
        overrides = {path: config[path] for path in paths if path in config}
        # Under PBT, an exploit restarts this trial from a better trial's checkpoint.
        start = tune.get_checkpoint() if pbt else None

        def make(callbacks: tuple):
            return make_trainer(job, name=pbt_mod.run_name(trial_id, start, trials_root, filesystem),
                                storage_path=trials_root,
                                filesystem=filesystem, queue=queue, trial_id=trial_id, overrides=overrides,
                                extra_callbacks=callbacks, resume_from=start, hooks=hooks)

        if pbt:
            pbt_mod.fit_reporting_to_tune(make)
        else:
            make((TuneReportCallback(),)).fit()

    return trial_driver


def _tuner(job: JobConfig, trainable, storage_path: str, filesystem):
    """A Tuner for the sweep: restored from `storage_path` when Tune recorded it there
    before, else a new one."""
    import ray
    from ray import tune

    spec = job.config.tune
    pbt = spec.scheduler.name == "pbt"
    resources = ray.cluster_resources()
    concurrency = concurrent_trials(job, resources.get("CPU", 1.0), resources.get("GPU", 0.0))
    param_space = {path: _domain(dimension) for path, dimension in spec.search_space.items()}
    tune_config = tune.TuneConfig(metric=spec.metric, mode=spec.mode, search_alg=_search_alg(job, concurrency),
                                  scheduler=_scheduler(job), num_samples=spec.num_trials)
    # Under PBT Tune keeps each trial's newest checkpoints (what an exploit copies).
    tune_checkpoints = tune.CheckpointConfig(num_to_keep=job.config.output.keep_checkpoints) if pbt else None
    run_config = tune.RunConfig(name=job.name, storage_path=storage_path, storage_filesystem=filesystem,
                                failure_config=tune.FailureConfig(max_failures=max_failures()),
                                checkpoint_config=tune_checkpoints,
                                verbose=0)  # our own progress lines replace Tune's tables
    experiment = f"{storage_path.rstrip('/')}/{job.name}"
    if filesystem is None:
        restorable = tune.Tuner.can_restore(experiment)
    else:
        restorable = tune.Tuner.can_restore(experiment, storage_filesystem=filesystem)
    if restorable:
        log.info("resuming the sweep recorded at %s", experiment)
        return tune.Tuner.restore(experiment, trainable=trainable, param_space=param_space,
                                  resume_unfinished=True, resume_errored=True, storage_filesystem=filesystem)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def _collect(job: JobConfig, grid) -> tuple[list[dict[str, Any]], list[tuple[float, int, str, dict, dict, str]]]:
    """(every trial's record, every reported checkpoint as a candidate) from Tune's
    results. A candidate is (value, order, checkpoint path, metrics, overrides, trial)."""
    spec = job.config.tune
    paths = list(spec.search_space)
    trials: list[dict[str, Any]] = []
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
            if not finite(value):
                continue
            if best_value is None or better(value, best_value, spec.mode):
                best_value = value
            path = row.get("checkpoint_path")
            if isinstance(path, str) and path:
                order += 1
                candidates.append((float(value), order, path, {k: v for k, v in row.items() if finite(v)},
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
                "loss", "step", "epoch", "train_runtime_seconds", "time_total_s")) and finite(v)},
            "error": str(result.error) if result.error else None,
        })
    return trials, candidates


def run_sweep(job: JobConfig, queue, storage_path: str, filesystem, hooks: Optional[LoopHooks] = None) -> Outcome:
    """Run the sweep (or resume it) and pick the best checkpoint Ray still keeps."""
    from ray import tune

    spec = job.config.tune
    trials_root = f"{storage_path.rstrip('/')}/{job.name}/trials"
    trainable = tune.with_resources(_trial_driver(job, queue, trials_root, filesystem, hooks), {"cpu": TRIAL_DRIVER_CPUS})
    grid = _tuner(job, trainable, storage_path, filesystem).fit()
    trials, candidates = _collect(job, grid)
    if spec.scheduler.name == "pbt":
        # Restarted trials make Tune's result logs lossy; the checkpoints say it all.
        from finetune_trainer.pbt import stored_candidates

        candidates = stored_candidates(trials_root, filesystem, spec.metric)
    # Later reports win ties, because Ray keeps the newest of equally scored checkpoints.
    sign = 1.0 if spec.mode == "min" else -1.0
    candidates.sort(key=lambda c: (sign * c[0], -c[1]))
    best = next((c for c in candidates if _checkpoint_exists(c[2], filesystem)), None)
    if best is None:
        errors = [t["error"] for t in trials if t["error"]]
        raise TrainerError("no trial of the sweep left a checkpoint with "
                           f"{spec.metric}" + (f"; first error: {errors[0]}" if errors else ""))
    _, _, checkpoint_path, metrics, overrides, trial = best
    return Outcome(checkpoint_path, metrics, overrides, trial, trials, metrics)


__all__ = ["TRIAL_DRIVER_CPUS", "concurrent_trials", "run_sweep", "trial_count"]
