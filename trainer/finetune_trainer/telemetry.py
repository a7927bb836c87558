"""Telling people and Prometheus how training goes.

Two halves, because they live in different processes:

- `WorkerMetrics` (rank 0 of each run) publishes loss, eval metrics, throughput, step
  and epoch as `ray.util.metrics` gauges and counters, tagged with the job and trial,
  so Ray's Prometheus endpoint exposes them while the job runs.
- `ReportForwarder` is a Ray Train callback (it runs in the train controller) that
  forwards every report, with its checkpoint path, to a Ray queue. The driver drains
  the queue with `ProgressTracker`, which keeps the history of every trial, prints a
  `ProgressReport.to_line()` line per report (the operator reads these from the
  driver's log) and rewrites `progress.json` next to the outputs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from finetune_trainer import storage
from finetune_trainer.config import OutputSpec
from finetune_trainer.progress import ProgressReport, TrialSummary
from finetune_trainer.tasks import TASKS

log = logging.getLogger(__name__)

PROGRESS_FILE = "progress.json"
SINGLE_TRIAL_ID = "run"


def _every_eval_metric() -> dict[str, str]:
    """The evaluation metrics of every task, with their descriptions."""
    return {name: text for task in TASKS.values() for name, text in task.eval_metrics.items()}


# ------------------------------------------------------------------ worker side


class WorkerMetrics:
    """`ray.util.metrics` instruments for one run, created lazily on rank 0."""

    _GAUGES = {
        "loss": "Mean training loss since the previous report",
        "samples_per_second": "Training samples per second, all workers together",
        "tokens_per_second": "Training tokens (non-padding) per second, all workers together",
        "step": "Optimizer steps completed",
        "epoch": "Epochs completed (fractional)",
        "learning_rate": "Current learning rate",
    }

    def __init__(self, job: str, trial: str, eval_metrics: Optional[Mapping[str, str]] = None) -> None:
        """`eval_metrics`: the task's evaluation metrics with their descriptions
        (`Task.eval_metrics`); by default those of every task, as the dashboard shows."""
        from ray.util import metrics

        if eval_metrics is None:
            eval_metrics = _every_eval_metric()
        self.tags = {"job": job, "trial": trial}
        keys = ("job", "trial")
        self.gauges = {
            name: metrics.Gauge(f"finetune_train_{name}", description=text, tag_keys=keys)
            for name, text in {**self._GAUGES, **eval_metrics}.items()
        }
        self.steps = metrics.Counter("finetune_train_steps_total", description="Optimizer steps taken",
                                     tag_keys=keys)
        self.samples = metrics.Counter("finetune_train_samples_total",
                                       description="Training samples processed, all workers", tag_keys=keys)
        self.reports = metrics.Counter("finetune_train_reports_total", description="Reports to Ray Train",
                                       tag_keys=keys)

    def record(self, values: dict[str, Any], *, new_steps: int, new_samples: int) -> None:
        for name, gauge in self.gauges.items():
            value = values.get(name)
            if isinstance(value, (int, float)) and math.isfinite(value):
                gauge.set(float(value), tags=self.tags)
        if new_steps > 0:
            self.steps.inc(new_steps, tags=self.tags)
        if new_samples > 0:
            self.samples.inc(new_samples, tags=self.tags)
        self.reports.inc(1, tags=self.tags)


# ------------------------------------------------------------------ controller side


def _make_report_forwarder_class():
    """The callback class, built on first use so importing this module needs no Ray."""
    from ray.train.v2.api.callback import UserCallback

    class ReportForwarder(UserCallback):
        """Forwards each report (rank 0's metrics + checkpoint path) to a Ray queue."""

        def __init__(self, queue: Any, trial_id: str, hyperparameters: Optional[dict] = None) -> None:
            self.queue = queue
            self.trial_id = trial_id
            self.hyperparameters = dict(hyperparameters or {})

        def after_report(self, run_context, metrics, checkpoint) -> None:
            event = {
                "trial": self.trial_id,
                "hyperparameters": self.hyperparameters,
                "metrics": dict(metrics[0]) if metrics else {},
                "checkpoint": checkpoint.path if checkpoint is not None else None,
                "time": time.time(),
            }
            try:
                self.queue.put(event, block=False)
            except Exception as err:  # a full or dead queue must not fail training
                log.warning("progress event dropped: %s", err)

    return ReportForwarder


_CALLBACK_CLASS = None


def report_forwarder(queue: Any, trial_id: str, hyperparameters: Optional[dict] = None):
    """A Ray Train callback forwarding reports of `trial_id` to `queue`."""
    global _CALLBACK_CLASS
    if _CALLBACK_CLASS is None:
        _CALLBACK_CLASS = _make_report_forwarder_class()
    return _CALLBACK_CLASS(queue, trial_id, hyperparameters)


# ------------------------------------------------------------------ driver side


@dataclass
class TrialState:
    """What the driver knows of one trial."""

    id: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    done: bool = False
    resumed_from: Optional[int] = None

    @property
    def latest(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


class ProgressTracker:
    """Collects progress events on the driver and publishes `ProgressReport`s.

    progress.json is rewritten at most every WRITE_INTERVAL_S seconds of `clock`
    while the run is running (every report still goes to the log line and the
    callback); the first report and any final state are always written."""

    WRITE_INTERVAL_S = 5.0

    def __init__(self, *, trials_total: int, metric: str, mode: str, job_uri: str,
                 output: Optional[OutputSpec] = None, echo: bool = True,
                 callback: Optional[Callable[[ProgressReport, dict], None]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.trials_total = trials_total
        self.metric, self.mode = metric, mode
        self.job_uri = job_uri
        self.output = output
        self.echo = echo
        self.callback = callback
        self.trials: dict[str, TrialState] = {}
        self.last_report: Optional[ProgressReport] = None
        self._clock = clock
        self._last_write: Optional[float] = None

    def trial(self, trial_id: str, hyperparameters: Optional[dict] = None) -> TrialState:
        state = self.trials.get(trial_id)
        if state is None:
            state = self.trials[trial_id] = TrialState(trial_id, dict(hyperparameters or {}))
        elif hyperparameters and not state.hyperparameters:
            state.hyperparameters = dict(hyperparameters)
        return state

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def best_trial(self) -> Optional[TrialState]:
        best, best_value = None, None
        for state in self.trials.values():
            for entry in state.history:
                value = entry.get(self.metric)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    if best_value is None or self._better(value, best_value):
                        best, best_value = state, value
        return best

    def handle(self, event: dict[str, Any]) -> ProgressReport:
        """Record one event from `ReportForwarder` and publish a report."""
        state = self.trial(event["trial"], event.get("hyperparameters"))
        metrics = {k: v for k, v in event.get("metrics", {}).items() if isinstance(v, (int, float))}
        state.history.append(metrics)
        if event.get("checkpoint"):
            state.checkpoints.append((event["checkpoint"], metrics))
        if metrics.get("final"):
            state.done = True
        resumed = metrics.get("resumed_from_step")
        if resumed is not None and resumed != state.resumed_from:
            state.resumed_from = int(resumed)
            where = "" if self.trials_total <= 1 else f"trial {state.id} "
            note = f"{where}resumed from checkpoint at step {state.resumed_from}"
            log.info("%s", note)
            return self.publish(self.build_report(message=note))
        return self.publish()

    def mark_done(self, trial_id: str) -> None:
        self.trial(trial_id).done = True

    def build_report(self, *, state: str = "running", message: Optional[str] = None,
                     model_uri: Optional[str] = None, final_metrics: Optional[dict] = None) -> ProgressReport:
        steps = [s.latest.get("step", 0) for s in self.trials.values()]
        totals = [s.latest.get("total_steps") for s in self.trials.values() if s.latest.get("total_steps")]
        epochs = [s.latest.get("epoch", 0.0) for s in self.trials.values()]
        completed = sum(1 for s in self.trials.values() if s.done)
        if self.trials_total <= 1:
            step = int(steps[0]) if steps else 0
            total = int(totals[0]) if totals else None
            percent = 100.0 * step / total if total else 0.0
        else:
            step = int(sum(steps))
            total = None
            fractions = [min(1.0, s.latest.get("step", 0) / s.latest["total_steps"]) if s.done is False
                         and s.latest.get("total_steps") else 1.0 if s.done else 0.0 for s in self.trials.values()]
            percent = 100.0 * sum(fractions) / self.trials_total
        if state == "succeeded":
            percent = 100.0
        best = self.best_trial()
        best_metrics: dict[str, float] = {}
        if best is not None:
            chosen = None
            for entry in best.history:
                value = entry.get(self.metric)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    if chosen is None or self._better(value, chosen[self.metric]):
                        chosen = entry
            best_metrics = {k: float(v) for k, v in (chosen or {}).items() if k.startswith("eval_")}
        if final_metrics:
            best_metrics.update({k: float(v) for k, v in final_metrics.items()
                                 if isinstance(v, (int, float)) and math.isfinite(v)})
        latest = {}
        if self.trials:
            newest = max(self.trials.values(), key=lambda s: len(s.history))
            latest = {k: float(v) for k, v in newest.latest.items()
                      if k in ("loss", *_every_eval_metric(), "samples_per_second",
                               "tokens_per_second", "learning_rate") and math.isfinite(v)}
        return ProgressReport(
            state=state, step=step, total_steps=total, epoch=float(max(epochs) if epochs else 0.0),
            percent=round(min(100.0, max(0.0, percent)), 2), trials_completed=completed if state == "running"
            else max(completed, len(self.trials)), trials_total=max(self.trials_total, 1), metrics=latest,
            best_metrics=best_metrics,
            best_trial=TrialSummary(id=best.id, hyperparameters=best.hyperparameters) if best else None,
            model_uri=model_uri, message=message,
        )

    def publish(self, report: Optional[ProgressReport] = None, *, force_write: bool = False) -> ProgressReport:
        report = report or self.build_report()
        self.last_report = report
        if self.echo:
            print(report.to_line(), flush=True)
        now = self._clock()
        due = self._last_write is None or now - self._last_write > self.WRITE_INTERVAL_S
        if force_write or due or report.state != "running":
            self._last_write = now
            self.write(report)
        if self.callback is not None:
            self.callback(report, {k: v for k, v in self.trials.items()})
        return report

    def write(self, report: ProgressReport) -> None:
        """Write progress.json; a store outage only costs a warning here."""
        try:
            body = json.dumps(report.to_dict(), indent=1, sort_keys=True).encode()
            storage.write_bytes(storage.join(self.job_uri, PROGRESS_FILE), body, self.output, attempts=1)
        except Exception as err:  # progress is best effort; the result upload is not
            log.warning("could not write %s: %s", PROGRESS_FILE, err)


__all__ = ["PROGRESS_FILE", "ProgressTracker", "SINGLE_TRIAL_ID", "TrialState", "WorkerMetrics",
           "report_forwarder"]
