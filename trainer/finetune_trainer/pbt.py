"""Population-based training: trials hand Tune their checkpoints, and a trial that Tune
restarts from another trial's checkpoint trains on from it.

Tune's `TuneReportCallback` forwards a Train run's metrics only, so PBT had nothing to
copy and its exploit step did nothing. Under PBT a trial's driver therefore runs its
`TorchTrainer` on a thread while a Train callback forwards each report (metrics and
checkpoint) to the driver, which reports both to Tune. Tune keeps the checkpoint with
the trial; on exploit it restarts the weaker trial with the stronger one's checkpoint
and mutated hyperparameters. The restarted driver finds it with `tune.get_checkpoint()`
and passes it to a new `TorchTrainer` in the loop's config (`start_from`; Train V2
refuses `resume_from_checkpoint`), under a run name of its own: a run name that
already holds checkpoints would resume from those instead.

The sweep's best checkpoint under PBT is read from the checkpoints themselves
(`stored_candidates`), not from Tune's result logs: a restarted trial's training
iteration rewinds, and Tune's logs of it then miss reports or drop them all, so a
sweep whose every checkpoint was whole could end with "no checkpoint" to export.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Callable, Optional

from finetune_trainer.checkpointing import STATE_JSON, is_whole
from finetune_trainer.ray_train import finite

_END = "end"


def run_name(trial_id: str, start: Optional[Any], trials_root: Optional[str] = None, filesystem: Any = None) -> str:
    """The Train run name for a trial started from `start` (a Tune checkpoint or None).

    A fresh start is the trial id, so a retry resumes that run's own checkpoints. A
    start from a checkpoint (an exploit, or a retry after one) is a new run each time:
    the trial id, a digest of the checkpoint's path, and how many runs under
    `trials_root` already started from it. Reusing a name would resume that run's
    newest checkpoint instead of `start`, so a second exploit from the same donor
    checkpoint would train on from the trial's own weights. (A retry loses nothing
    by it: every checkpoint of the run was reported to Tune, and `start` is the newest.)"""
    if start is None:
        return trial_id
    stem = f"{trial_id}-{hashlib.sha256(str(start.path).encode()).hexdigest()[:8]}"
    if trials_root is None:
        return stem
    from pyarrow import fs as pafs

    taken = {info.base_name for info in _children(filesystem or pafs.LocalFileSystem(), trials_root)}
    runs = sum(1 for name in taken if name == stem or name.startswith(stem + "-"))
    return stem if runs == 0 else f"{stem}-{runs}"


def _forwarder_class():
    from ray.train.v2.api.callback import UserCallback

    class ReportForwarder(UserCallback):
        """Runs in the Train controller: sends rank 0's metrics and the registered
        checkpoint of every report to the trial driver."""

        def __init__(self, queue: Any) -> None:
            self.queue = queue

        def after_report(self, run_context, metrics, checkpoint) -> None:
            self.queue.put((dict(metrics[0]) if metrics else {}, checkpoint))

    return ReportForwarder


def fit_reporting_to_tune(make_trainer: Callable[[tuple], Any]) -> None:
    """Run the trainer that `make_trainer(extra_callbacks)` builds, reporting every
    Train report to Tune with its checkpoint (its path also under `checkpoint_path`,
    as `TuneReportCallback` does). Raises what `fit()` raised."""
    from ray import tune
    from ray.util.queue import Queue

    queue = Queue(actor_options={"num_cpus": 0})
    trainer = make_trainer((_forwarder_class()(queue),))
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            result = trainer.fit()
            if result.error is not None:
                failure.append(result.error)
        except BaseException as err:  # handed to the driver's thread below
            failure.append(err)
        finally:
            queue.put((_END, None))

    thread = threading.Thread(target=fit, name="trial-fit", daemon=True)
    thread.start()
    try:
        while True:
            metrics, checkpoint = queue.get()
            if metrics == _END:
                break
            if checkpoint is not None:
                tune.report({**metrics, "checkpoint_path": checkpoint.path}, checkpoint=checkpoint)
            else:
                tune.report(metrics)
        thread.join()
    finally:
        import ray

        ray.kill(queue.actor)
    if failure:
        raise failure[0]


def stored_candidates(trials_root: str, filesystem: Any, metric: str) -> list[tuple[float, int, str, dict, dict, str]]:
    """Every whole checkpoint of every Train run under `trials_root` that scored
    `metric`, as the sweep's candidates (value, order, path, metrics, hyperparameters,
    trial); `order` grows with the checkpoint's time, so later ones win ties."""
    from pyarrow import fs as pafs

    filesystem = filesystem or pafs.LocalFileSystem()
    found: list[tuple[str, str, dict]] = []
    for run in _children(filesystem, trials_root):
        if run.type != pafs.FileType.Directory:
            continue
        for folder in _children(filesystem, run.path):
            if folder.type != pafs.FileType.Directory or not folder.base_name.startswith("checkpoint_"):
                continue
            files = {f.base_name: f.size for f in _children(filesystem, folder.path) if f.type == pafs.FileType.File}
            meta = _read_meta(filesystem, f"{folder.path}/{STATE_JSON}") if STATE_JSON in files else None
            if meta is not None and is_whole(meta.get("file_bytes") or {}, files):
                found.append((folder.base_name, folder.path, meta))
    candidates = []
    for order, (_, path, meta) in enumerate(sorted(found, key=lambda item: item[0]), start=1):
        metrics = meta.get("metrics") or {}
        value = metrics.get(metric)
        if finite(value):
            candidates.append((float(value), order, path, dict(metrics), dict(meta.get("hyperparameters") or {}),
                               str(meta.get("trial"))))
    return candidates


def _children(filesystem: Any, path: str) -> list[Any]:
    from pyarrow import fs as pafs

    try:
        return filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError:
        return []


def _read_meta(filesystem: Any, path: str) -> Optional[dict[str, Any]]:
    """A checkpoint's state.json, or None when it is unreadable (an upload cut off)."""
    try:
        with filesystem.open_input_stream(path) as stream:
            meta = json.loads(stream.read())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


__all__ = ["fit_reporting_to_tune", "run_name", "stored_candidates"]
