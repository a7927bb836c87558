"""Run the real per-worker training loop in this process, without a Ray cluster.

`train_loop_per_worker` talks to Ray Train only through `ray.train.get_context`,
`get_checkpoint` and `report`. Ray Train V2 runs a loop in-process in its local mode
through a `LocalTrainFnUtils`; `LoopHarness` is one that also starts the loop from a
checkpoint folder and keeps every reported checkpoint, the way Ray's storage would:

- a synchronous report copies the checkpoint before it returns;
- an asynchronous one (`checkpoint_upload_mode=ASYNC`) copies it on a thread and then
  deletes the local folder, as Ray does. With `upload_gate` set, uploads wait for the
  gate (a synchronous one fails after `SYNC_UPLOAD_WAIT_S`, as a blocked rank would).

A run of a tiny BERT on a few dozen rows takes about a second.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any, Optional

from ray.train import Checkpoint
from ray.train.v2._internal.execution.train_fn_utils import LocalTrainFnUtils, set_train_fn_utils
from ray.train.v2.api.report_config import CheckpointUploadMode

SYNC_UPLOAD_WAIT_S = 5.0
ASYNC_UPLOAD_WAIT_S = 60.0


class LoopHarness(LocalTrainFnUtils):
    def __init__(self, keep: Path, start: Optional[Path] = None, upload_gate: Optional[threading.Event] = None):
        super().__init__(experiment_name="harness")
        self.keep = Path(keep)
        self.start = start
        self.upload_gate = upload_gate
        self.reports: list[dict[str, Any]] = []
        self.checkpoints: dict[int, Path] = {}  # step -> kept copy (the latest of a step)
        self.local_folders: list[Path] = []
        self.uploads: list[threading.Thread] = []

    # -- what the loop calls
    def get_checkpoint(self) -> Optional[Checkpoint]:
        return Checkpoint.from_directory(str(self.start)) if self.start else None

    def report(self, metrics: dict[str, Any], checkpoint: Optional[Checkpoint] = None,
               checkpoint_upload_mode: CheckpointUploadMode = CheckpointUploadMode.SYNC,
               delete_local_checkpoint_after_upload: Optional[bool] = None, **_: Any) -> None:
        self.reports.append(dict(metrics))
        if checkpoint is None:
            return
        source, step = Path(checkpoint.path), int(metrics["step"])
        target = self.keep / f"report-{len(self.reports)}-step-{step}"  # a step may report twice
        self.local_folders.append(source)
        if delete_local_checkpoint_after_upload is None:
            delete_local_checkpoint_after_upload = checkpoint_upload_mode == CheckpointUploadMode.ASYNC
        if checkpoint_upload_mode == CheckpointUploadMode.ASYNC:
            upload = threading.Thread(target=self._upload,
                                      args=(source, target, step, delete_local_checkpoint_after_upload, ASYNC_UPLOAD_WAIT_S))
            upload.start()
            self.uploads.append(upload)
        else:
            self._upload(source, target, step, delete_local_checkpoint_after_upload, SYNC_UPLOAD_WAIT_S)

    # -- helpers for tests
    def _upload(self, source: Path, target: Path, step: int, delete: bool, wait_s: float) -> None:
        if self.upload_gate is not None and not self.upload_gate.wait(wait_s):
            raise TimeoutError(f"the checkpoint upload of step {step} waited {wait_s} s for the gate")
        shutil.copytree(source, target)
        self.checkpoints[step] = max(self.checkpoints.get(step, target), target)
        if delete:
            shutil.rmtree(source)

    def finish_uploads(self) -> None:
        for upload in self.uploads:
            upload.join(timeout=ASYNC_UPLOAD_WAIT_S)
            assert not upload.is_alive(), "a checkpoint upload did not finish"

    def final_weights(self):
        import torch

        return torch.load(self.checkpoints[max(self.checkpoints)] / "model.pt", weights_only=True)


def run_loop(job, keep: Path, start: Optional[Path] = None, upload_gate: Optional[threading.Event] = None,
             overrides: Optional[dict[str, Any]] = None, hooks: Any = None) -> LoopHarness:
    """Run `train_loop_per_worker` for `job` (a JobConfig) as a 1-worker group, with
    `hooks` (a LoopHooks) as the loop's test seam."""
    from finetune_trainer.train_loop import train_loop_per_worker

    harness = LoopHarness(keep, start, upload_gate)
    set_train_fn_utils(harness)
    try:
        train_loop_per_worker({"job": job.to_dict(), "overrides": overrides or {}, "trial": "harness",
                               "hooks": hooks})
    finally:
        set_train_fn_utils(None)
    if upload_gate is None:
        harness.finish_uploads()
    return harness


def loop_job(tmp: Path, model: Path, train: Path, validation: Path, *, training: Optional[dict] = None,
             strategy: Optional[dict] = None):
    from finetune_trainer.config import JobConfig

    config: dict[str, Any] = {
        "model": {"source": str(model)},
        "data": {"train": str(train), "validation": str(validation), "maxSeqLength": 16},
        "training": {"epochs": 2, "batchSize": 8, "checkpoint": {"every": 3, "unit": "step"},
                     "evaluation": {"every": 3, "unit": "step"}, **(training or {})},
        "output": {"uri": str(tmp / "out")},
    }
    if strategy:
        config["strategy"] = strategy
    return JobConfig.model_validate({"name": "loop", "config": config,
                                     "scaling": {"numWorkers": 1, "cpusPerWorker": 1}})
