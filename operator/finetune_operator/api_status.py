"""The FineTuneJob's status, as the operator writes it: phase, conditions, progress.

The status half of the API models (`api` holds the identity, the spec and the whole
manifest, and offers these names too). The CRD's status schema is generated from
these classes, so their docstrings are what `kubectl explain` shows.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Optional

from pydantic import Field

from finetune_trainer.api import Spec

class Phase(StrEnum):
    """Where a FineTuneJob is in its life. Each phase equals (and prints as) its name,
    so it compares with the plain strings read back from the API server."""

    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


PHASES: tuple[str, ...] = tuple(Phase)
TERMINAL_PHASES: tuple[Phase, ...] = (Phase.SUCCEEDED, Phase.FAILED)


class Condition(Spec):
    """A condition in the shape of Kubernetes' metav1.Condition."""

    type: str
    """Accepted, Queued, Running, Retrying, Succeeded, Failed or Suspended."""

    status: Literal["True", "False", "Unknown"]
    """`True`, `False` or `Unknown`."""

    reason: str
    """A CamelCase reason from a fixed set."""

    message: str = ""
    """Human-readable detail."""

    last_transition_time: datetime
    """When status last changed."""

    observed_generation: Optional[int] = None
    """The spec generation this condition was computed from."""


class Progress(Spec):
    """How far training has come, as the trainer last reported."""

    step: int = 0
    """Optimizer steps done in the current or best trial."""

    total_steps: Optional[int] = None
    """Optimizer steps planned per trial."""

    epoch: float = 0.0
    """Epochs done."""

    percent: float = 0.0
    """Overall completion, 0 to 100."""

    trials_completed: int = 0
    """Finished trials of a sweep."""

    trials_total: int = 1
    """Trials planned."""


class BestTrial(Spec):
    """The best trial of a sweep."""

    id: str
    """Ray Tune trial id."""

    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    """Its sampled hyperparameters, keyed by spec path."""


class FineTuneJobStatus(Spec):
    """What the operator observed of the job."""

    phase: Phase = Phase.PENDING
    """Pending, Queued, Running, Succeeded, Failed or Suspended."""

    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Accepted, Queued, Running, Retrying, Succeeded, Failed and Suspended."""

    observed_generation: Optional[int] = None
    """The spec generation the status reflects."""

    ray_job_name: Optional[str] = None
    """The RayJob that runs this job."""

    attempt: int = 0
    """Which attempt is running: 1 for the first, more after retries."""

    start_time: Optional[datetime] = None
    """When the RayJob was created."""

    completion_time: Optional[datetime] = None
    """When the job succeeded or failed."""

    progress: Optional[Progress] = None
    """Training progress."""

    metrics: dict[str, float] = Field(default_factory=dict)
    """Latest validation metrics."""

    best_metrics: dict[str, float] = Field(default_factory=dict)
    """Best validation (and final test) metrics so far."""

    best_metric: Optional[str] = None
    """The ranking metric's best value as `name=value` (for example `eval_loss=0.312`),
    shown by `kubectl get`."""

    best_trial: Optional[BestTrial] = None
    """The winning trial of a sweep."""

    model_uri: Optional[str] = None
    """Where the fine-tuned model is, once the job succeeded."""

    message: Optional[str] = None
    """The latest human-readable word on the job."""
