"""Faults the Ray tests inject into the training loop through its test seam: a
`LoopHooks` handed to `run_job(..., loop_hooks=...)`, which Ray pickles to every
worker (this module is importable there: a local Ray puts the driver's working
directory, the repository root, on the workers' path)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Optional

from finetune_trainer.loop.hooks import LoopHooks

log = logging.getLogger(__name__)


@dataclass
class ExitOnceAfterStep(LoopHooks):
    """The last rank exits hard after optimizer step `step`, once per run: it creates
    `marker` first, and does nothing when `marker` exists. With `after_file` set it
    first waits (up to `wait_s`) for that file: Ray Train registers a reported
    checkpoint asynchronously, so the test makes the file once the driver has seen
    the checkpoint."""

    step: int
    marker: str
    after_file: Optional[str] = None
    wait_s: float = 60.0

    def after_step(self, step: int, *, rank: int, world_size: int) -> None:
        if rank != world_size - 1 or step != self.step:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{os.getpid()} step {step}\n".encode())
        os.close(fd)
        deadline = time.monotonic() + self.wait_s
        while self.after_file and not os.path.exists(self.after_file) and time.monotonic() < deadline:
            time.sleep(0.1)
        log.warning("fault injection: rank %d exits hard after step %d", rank, step)
        os._exit(17)
