"""The driver: run a JobConfig on Ray and leave a finished model in storage.

`run_job` starts one data-parallel `TorchTrainer` (or, with `tune`, a Ray Tune sweep
whose trials each drive their own `TorchTrainer` with `TuneReportCallback`), follows
progress, then takes the best checkpoint, scores the test split once and exports the
model (in a Ray task sized like one training worker, see `finishing`), and writes
metrics.json, trials.json, curves.png and a model card under `<output uri>/<job name>/`
(the model in `model/`). Everything Ray Train and Tune keep for resume (checkpoints,
experiment state) lives under `<output uri>/<job name>/ray/`, so the top of the job's
folder holds only the documented outputs.

Uploads finish with completion markers, written last: `model/_SUCCESS` when the model
is whole, and `<job>/_SUCCESS` when every output is. A restart with the same name and
output therefore resumes from Ray's checkpoints in the same folder, and a job whose
marker exists is not trained again: its recorded result is returned.

This module orchestrates; the parts live beside it: `ray_train` (the TorchTrainer and
a single run), `sweeps` (Ray Tune), `finishing` (scoring, export and records) and
`ray_errors` (turning Ray's wrapped errors into one message).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from finetune_trainer import staging, storage
from finetune_trainer.config import JobConfig, selection_metric
from finetune_trainer.errors import StorageError, TrainerError
from finetune_trainer.finishing import CONFIG_FINGERPRINT, MODEL_DIR, config_fingerprint, finish_on_worker, write_outputs
from finetune_trainer.loop.hooks import LoopHooks
from finetune_trainer.progress import ProgressReport
from finetune_trainer.ray_errors import explain
from finetune_trainer.ray_train import (
    CONTROLLER_FAILURE_LIMIT_ENV, MAX_FAILURES_ENV, RAY_DIR, finite, job_uri, ray_storage, run_single,
)
from finetune_trainer.sweeps import concurrent_trials, run_sweep, trial_count
from finetune_trainer.telemetry import ProgressTracker

log = logging.getLogger(__name__)

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
    """The recorded result when the job's outputs are complete, else None. Outputs of
    the same name written by a different training configuration are not this job's
    result: a StorageError says so rather than hand back a model trained otherwise."""
    root = job_uri(job)
    output = job.config.output
    if not storage.is_complete(root, output):
        return None
    metrics = json.loads(storage.read_bytes(storage.join(root, "metrics.json"), output))
    recorded = metrics.get(CONFIG_FINGERPRINT)
    if recorded is not None and recorded != config_fingerprint(job.config):
        raise StorageError(
            f"output.uri: {root} already holds a finished run named {job.name!r} that was trained with a "
            "different configuration; delete that folder to train this one, or give the job another name "
            "(metadata.name, or --name with finetune run)"
        )
    trials: list[dict[str, Any]] = []
    if storage.exists(storage.join(root, "trials.json"), output):
        trials = json.loads(storage.read_bytes(storage.join(root, "trials.json"), output)).get("trials", [])
    best = metrics.get("best_trial")
    best_trial = next((t for t in trials if t.get("id") == best), None) if best else None
    return RunResult(job.name, root, storage.join(root, MODEL_DIR), metrics, best_trial, trials,
                     already_finished=True)



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


def run_job(job: JobConfig, *, progress_callback: Optional[ProgressCallback] = None, echo: bool = True,
            loop_hooks: Optional[LoopHooks] = None) -> RunResult:
    """Train `job` on the current Ray cluster (started locally when none is), then
    export the best model and its records. Raises TrainerError with a complete
    message when it cannot. `loop_hooks` is the tests' seam into the training loop
    (see `finetune_trainer.loop.hooks`); production passes none."""
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
    storage_path, filesystem = ray_storage(job)
    queue = Queue(maxsize=100_000, actor_options={"num_cpus": 0})
    done = threading.Event()
    drainer = threading.Thread(target=_drain, args=(queue, tracker, done), name="progress", daemon=True)
    drainer.start()
    try:
        try:
            # Workers load a hub model from the job's staged copy, never from the hub.
            staged = staging.stage_model(job)
            if job.config.tune is not None:
                outcome = run_sweep(staged, queue, storage_path, filesystem, loop_hooks)
            else:
                outcome = run_single(staged, queue, storage_path, filesystem, loop_hooks)
        finally:
            done.set()
            drainer.join(timeout=30)
        model_uri = storage.join(root, MODEL_DIR)
        # Scoring and export run on a worker, which uploads the model with its own
        # marker; then the records, then the job's marker.
        scored = finish_on_worker(staged, outcome, filesystem, model_uri)
        with tempfile.TemporaryDirectory(prefix="finetune-out-") as scratch:
            meta_dir = Path(scratch) / "meta"
            metrics = write_outputs(job, outcome, scored, tracker, meta_dir)
            storage.upload_dir(meta_dir, root, output)
    except TrainerError as err:
        _fail(tracker, str(err))
        raise
    except Exception as err:  # Ray wraps worker errors; surface the cause plainly
        message = explain(err)
        _fail(tracker, message)
        raise TrainerError(message) from err
    finally:
        try:
            ray.kill(queue.actor)
        except Exception:  # already gone with the cluster
            pass
    best_trial = next((t for t in outcome.trials if t["id"] == outcome.best_trial), None)
    from finetune_trainer.tasks import get_task

    reported = tuple(get_task(job.config).eval_metrics)  # the task's: accuracy/F1, or perplexity
    tested = (k.replace("eval_", "test_") for k in reported if k != "eval_loss")
    final = {k: metrics.get(k) for k in (*reported, *tested) if finite(metrics.get(k))}
    tracker.publish(tracker.build_report(state="succeeded", model_uri=model_uri, final_metrics=final,
                                         message=f"model written to {model_uri}"), force_write=True)
    return RunResult(job.name, root, model_uri, metrics, best_trial, outcome.trials)


def _fail(tracker: ProgressTracker, message: str) -> None:
    try:
        tracker.publish(tracker.build_report(state="failed", message=message), force_write=True)
    except Exception as err:  # reporting the failure must not hide it
        log.warning("could not publish the failure: %s", err)


__all__ = ["MAX_FAILURES_ENV", "MODEL_DIR", "RAY_DIR", "RunResult", "concurrent_trials", "job_uri", "load_finished", "run_job"]


__all__ = ["CONTROLLER_FAILURE_LIMIT_ENV", "MAX_FAILURES_ENV", "MODEL_DIR", "RAY_DIR", "RunResult", "concurrent_trials",
           "job_uri", "load_finished", "run_job", "trial_count"]
