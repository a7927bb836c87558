"""The training loop's test seam: callbacks at fixed points of the loop.

The runner hands a `LoopHooks` to the loop through the loop config's `hooks` entry
(`run_job(..., loop_hooks=...)`); Ray pickles it to every worker, so a subclass must
be importable there (for a local Ray, a module under the driver's working directory
is). Production runs pass none and the loop calls `NO_HOOKS`, whose methods do
nothing. Tests subclass it to inject faults, for example a worker that exits after a
given step, to prove that a restarted worker group resumes from its checkpoint.
"""

from __future__ import annotations


class LoopHooks:
    """Callbacks of the training loop; every method does nothing unless overridden."""

    def after_step(self, step: int, *, rank: int, world_size: int) -> None:
        """Called on every rank after optimizer step `step` (counted from 1 over the
        whole run) and the strategy's step-end work, before that step's evaluation,
        report and checkpoint."""


NO_HOOKS = LoopHooks()

__all__ = ["LoopHooks", "NO_HOOKS"]
