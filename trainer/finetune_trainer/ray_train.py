"""Ray Train plumbing for one job: the `TorchTrainer` that runs the training loop on a
worker group, with its scaling, failure and checkpoint settings, and the single
(no-sweep) run that fits it and picks the best checkpoint.

`Outcome` is what a run hands on to finishing: the best checkpoint's path and
metrics, the overrides it was trained with and, for a sweep, every trial's record.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from finetune_trainer import storage
from finetune_trainer.config import JobConfig, TrainingConfig, selection_metric
from finetune_trainer.errors import TrainerError
from finetune_trainer.telemetry import SINGLE_TRIAL_ID, report_forwarder
from finetune_trainer.loop.hooks import LoopHooks
from finetune_trainer.train_loop import train_loop_per_worker

RAY_DIR = "ray"
"""Sub-folder of the job's folder for Ray's own files: the run (or Tune experiment)
named after the job, with its checkpoints and state, e.g. `ray/<job>/checkpoint_.../`."""
MAX_FAILURES_ENV = "FINETUNE_MAX_FAILURES"
DEFAULT_MAX_FAILURES = 2
# Ray Train retries a worker group that cannot start (its placement group never forms,
# e.g. an accelerator type no node has) as a controller failure, for ever by default.
CONTROLLER_FAILURE_LIMIT_ENV = "FINETUNE_CONTROLLER_FAILURE_LIMIT"
DEFAULT_CONTROLLER_FAILURE_LIMIT = 3


def job_uri(job: JobConfig) -> str:
    """The job's folder: `<output uri>/<job name>`."""
    return storage.join(job.config.output.uri, job.name)


def max_failures(variable: str = MAX_FAILURES_ENV, default: int = DEFAULT_MAX_FAILURES) -> int:
    """The whole number in environment variable `variable` (else `default`)."""
    raw = os.environ.get(variable, str(default))
    try:
        return int(raw)
    except ValueError:
        raise TrainerError(f"{variable}={raw!r} is not a whole number (allowed: -1 for unlimited, 0 or more)") \
            from None


def ray_storage(job: JobConfig):
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
    resources = {"CPU": scaling.cpus_per_worker}
    use_gpu = scaling.gpus_per_worker > 0
    if use_gpu:
        resources["GPU"] = scaling.gpus_per_worker
    return ScalingConfig(num_workers=scaling.num_workers, use_gpu=use_gpu, resources_per_worker=resources,
                         accelerator_type=scaling.accelerator_type)


def _checkpoint_config(config: TrainingConfig):
    from ray.train import CheckpointConfig

    metric, mode = selection_metric(config)
    return CheckpointConfig(num_to_keep=config.output.keep_checkpoints, checkpoint_score_attribute=metric,
                            checkpoint_score_order=mode)


def make_trainer(job: JobConfig, *, name: str, storage_path: str, filesystem, queue, trial_id: str,
                 overrides: Optional[dict] = None, extra_callbacks: tuple = (), resume_from=None,
                 hooks: Optional[LoopHooks] = None):
    """A TorchTrainer that runs `train_loop_per_worker` for `job` (with a trial's
    `overrides`), reporting progress to `queue` as `trial_id`. `hooks` reach the
    loop on every worker (a test seam, see `finetune_trainer.loop.hooks`)."""
    from ray.train import FailureConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    config = job.config
    loop_config = {"job": job.to_dict(), "overrides": dict(overrides or {}), "trial": trial_id,
                   "hooks": hooks, "start_from": resume_from}
    run_config = RunConfig(
        name=name, storage_path=storage_path, storage_filesystem=filesystem,
        failure_config=FailureConfig(max_failures=max_failures(), controller_failure_limit=max_failures(
            CONTROLLER_FAILURE_LIMIT_ENV, DEFAULT_CONTROLLER_FAILURE_LIMIT)),
        checkpoint_config=_checkpoint_config(config),
        callbacks=[*extra_callbacks, report_forwarder(queue, trial_id, overrides)],
    )
    backend = TorchConfig(backend="nccl" if job.scaling.gpus_per_worker > 0 else "gloo")
    return TorchTrainer(train_loop_per_worker, train_loop_config=loop_config, torch_config=backend,
                        scaling_config=_scaling_config(job), run_config=run_config)


def better(a: float, b: float, mode: str) -> bool:
    return a < b if mode == "min" else a > b


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class Outcome:
    """What training produced: the best checkpoint and every trial's record."""

    checkpoint_path: str
    checkpoint_metrics: dict[str, Any]
    overrides: dict[str, Any]
    best_trial: Optional[str]
    trials: list[dict[str, Any]]
    last_metrics: dict[str, Any]


def run_single(job: JobConfig, queue, storage_path: str, filesystem, hooks: Optional[LoopHooks] = None) -> Outcome:
    """Fit one TorchTrainer and pick its best-scoring checkpoint."""
    metric, mode = selection_metric(job.config)
    trainer = make_trainer(job, name=job.name, storage_path=storage_path, filesystem=filesystem, queue=queue,
                           trial_id=SINGLE_TRIAL_ID, hooks=hooks)
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    candidates = [(c, m) for c, m in (result.best_checkpoints or []) if finite(m.get(metric))]
    if candidates:
        best_checkpoint, best_metrics = candidates[0]
        for checkpoint, metrics in candidates[1:]:
            if better(metrics[metric], best_metrics[metric], mode):
                best_checkpoint, best_metrics = checkpoint, metrics
    elif result.checkpoint is not None:
        best_checkpoint, best_metrics = result.checkpoint, dict(result.metrics or {})
    else:
        raise TrainerError("training finished without a checkpoint; nothing to export")
    last = {}
    if result.best_checkpoints:
        last = max((m for _, m in result.best_checkpoints), key=lambda m: m.get("step", 0))
    return Outcome(best_checkpoint.path, dict(best_metrics), {}, None, [], dict(last))




__all__ = ["CONTROLLER_FAILURE_LIMIT_ENV", "MAX_FAILURES_ENV", "Outcome", "RAY_DIR", "better", "finite", "job_uri",
           "make_trainer", "max_failures", "ray_storage", "run_single"]
