"""How the trainer tells the outside world how far it has come.

The trainer's driver prints one line per report to stdout:

    finetune-progress: {"step": 40, "totalSteps": 120, ...}

On Kubernetes the driver's stdout is the RayJob submitter pod's log, so the operator
reads progress with a `pods/log` GET (tail lines) and never talks to Ray workers or
needs storage credentials. The same report is also written as `progress.json` next to
the job's outputs, for people and for `finetune run`.

The operator imports this module (the trainer never imports the operator).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Literal, Optional

from pydantic import Field

from finetune_trainer.config import Spec

PROGRESS_PREFIX = "finetune-progress: "


class TrialSummary(Spec):
    """A trial's identity and sampled hyperparameters."""

    id: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class ProgressReport(Spec):
    """One progress report of a run (all trials together)."""

    state: Literal["running", "succeeded", "failed"] = "running"
    step: int = 0
    total_steps: Optional[int] = None
    epoch: float = 0.0
    percent: float = Field(default=0.0, ge=0.0, le=100.0)
    trials_completed: int = 0
    trials_total: int = 1
    metrics: dict[str, float] = Field(default_factory=dict)
    best_metrics: dict[str, float] = Field(default_factory=dict)
    best_trial: Optional[TrialSummary] = None
    model_uri: Optional[str] = None
    message: Optional[str] = None

    def to_line(self) -> str:
        return PROGRESS_PREFIX + json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)


def parse_progress_line(line: str) -> Optional[ProgressReport]:
    """The report on one log line, or None when the line is not a valid report."""
    position = line.find(PROGRESS_PREFIX)
    if position < 0:
        return None
    try:
        return ProgressReport.model_validate(json.loads(line[position + len(PROGRESS_PREFIX):]))
    except ValueError:
        return None


def latest_progress(lines: Iterable[str]) -> Optional[ProgressReport]:
    """The last valid report in a log, or None."""
    latest = None
    for line in lines:
        report = parse_progress_line(line)
        if report is not None:
            latest = report
    return latest
