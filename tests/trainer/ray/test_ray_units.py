"""Fast checks (no Ray cluster) of the driver-side pieces: progress tracking, the demo
data, trial concurrency, failure explanations, the live view and `finetune run`'s
manifest handling."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from tests.support.jobs import job_config


def test_demo_data_is_deterministic_balanced_and_disjoint(tmp_path):
    from finetune_trainer import demo

    rows = demo.generate(500, seed=7)
    assert rows == demo.generate(500, seed=7) and rows != demo.generate(500, seed=8)
    assert len({text for text, _ in rows}) == 500
    assert {intent: sum(1 for _, i in rows if i == intent) for intent in demo.INTENTS} == \
        {intent: 100 for intent in demo.INTENTS}
    paths = demo.write_splits(tmp_path, 500, 7)
    splits = {name: list(csv.DictReader(open(path))) for name, path in paths.items()}
    assert [len(splits[n]) for n in ("train", "validation", "test")] == [350, 75, 75]
    texts = [{r["text"] for r in split} for split in splits.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])


def _event(trial: str, step: int, accuracy: float, *, checkpoint: str | None = None, final: bool = False,
           lr: float = 0.1) -> dict:
    return {"trial": trial, "hyperparameters": {"training.learningRate": lr},
            "metrics": {"step": step, "total_steps": 10, "epoch": step / 5, "loss": 1.0 / step,
                        "eval_accuracy": accuracy, "final": final},
            "checkpoint": checkpoint}


def test_progress_tracker_reports_best_trial_and_writes_progress_json(tmp_path):
    from finetune_trainer.progress import parse_progress_line
    from finetune_trainer.telemetry import PROGRESS_FILE, ProgressTracker

    now = [1000.0]
    seen = []
    tracker = ProgressTracker(trials_total=2, metric="eval_accuracy", mode="max", job_uri=str(tmp_path / "job"),
                              echo=False, callback=lambda report, trials: seen.append(report),
                              clock=lambda: now[0])

    def on_disk() -> dict:
        return json.loads((tmp_path / "job" / PROGRESS_FILE).read_text())

    tracker.handle(_event("a", 5, 0.6, checkpoint="/ckpt/a5", lr=0.1))
    assert on_disk()["bestTrial"]["id"] == "a"  # the first report is written at once
    now[0] += 1.0
    tracker.handle(_event("b", 5, 0.8, lr=0.01))
    assert seen[-1].best_trial.id == "b"
    assert on_disk()["bestTrial"]["id"] == "a"  # 1 s later: reported, not rewritten
    now[0] += tracker.WRITE_INTERVAL_S
    report = tracker.handle(_event("a", 10, 0.7, final=True, lr=0.1))
    assert report.best_trial.id == "b" and report.best_trial.hyperparameters == {"training.learningRate": 0.01}
    assert report.best_metrics == {"eval_accuracy": 0.8}
    assert report.trials_completed == 1 and report.trials_total == 2
    assert report.percent == pytest.approx(75.0)  # a done, b half-way
    assert tracker.trials["a"].checkpoints == [("/ckpt/a5", tracker.trials["a"].history[0])]
    assert parse_progress_line("log prefix " + report.to_line()) == report
    written = on_disk()  # past the interval: rewritten
    assert written["state"] == "running" and written["bestTrial"]["id"] == "b" and written["trialsCompleted"] == 1
    final = tracker.publish(tracker.build_report(state="failed", message="store down"))
    assert on_disk()["message"] == "store down"  # a final state is written at once, clock or not
    assert seen[-1] is final


def test_tracker_min_mode_prefers_lower_values(tmp_path):
    from finetune_trainer.telemetry import ProgressTracker

    tracker = ProgressTracker(trials_total=2, metric="eval_accuracy", mode="min", job_uri=str(tmp_path), echo=False)
    tracker.handle(_event("a", 5, 0.6))
    tracker.handle(_event("b", 5, 0.8))
    assert tracker.best_trial().id == "a"


def _job(workers: int = 2, cpus: float = 1.0, max_concurrent: int | None = None, trials: int = 8):
    tune = {"searchSpace": {"training.learningRate": {"type": "loguniform", "min": 1e-5, "max": 1e-3}},
            "numTrials": trials}
    if max_concurrent:
        tune["maxConcurrentTrials"] = max_concurrent
    return job_config(tune=tune, scaling={"numWorkers": workers, "cpusPerWorker": cpus})


def test_concurrent_trials_fit_resources_and_respect_the_spec():
    from finetune_trainer.config import SearchDimension
    from finetune_trainer.runner import concurrent_trials

    assert concurrent_trials(_job(), available_cpus=5) == 2        # 2 x (2 workers + 0.25 driver)
    assert concurrent_trials(_job(), available_cpus=2) == 1        # never zero
    assert concurrent_trials(_job(max_concurrent=1), available_cpus=64) == 1
    assert concurrent_trials(_job(trials=3), available_cpus=64) == 3
    grid = _job(trials=1).model_copy(deep=True)
    grid.config.tune.search_space = {"training.batchSize": SearchDimension(type="grid", values=[8, 16, 32])}
    assert concurrent_trials(grid, available_cpus=64) == 3  # a 3-point grid is 3 trials, though numTrials is 1


def test_failure_explanations_name_the_real_cause():
    from finetune_trainer.ray_errors import explain as _explain

    class WorkerGroupError(Exception):
        def __init__(self, failures):
            super().__init__("Training failed due to worker errors:")
            self.worker_failures = failures

    data = RuntimeError("Traceback ...\nfinetune_trainer.errors.DataError: data.train (x.csv): column 'text' "
                        "(data.textColumn) not found; available columns: 'body'")
    assert _explain(WorkerGroupError({0: data})) == \
        "data.train (x.csv): column 'text' (data.textColumn) not found; available columns: 'body'"
    store = OSError("When uploading part for key 'k': AWS Error NETWORK_CONNECTION during UploadPart: curlCode: 7")
    message = _explain(WorkerGroupError({1: store}))
    assert message.startswith("training failed because the output store is unreachable:") and "curlCode" in message


def test_live_view_shows_a_trials_table(tmp_path):
    from rich.console import Console

    from finetune_operator.cli.run import LiveView
    from finetune_trainer.telemetry import ProgressTracker

    console = Console(record=True, force_terminal=True, width=140)
    tracker = ProgressTracker(trials_total=2, metric="eval_accuracy", mode="max", job_uri=str(tmp_path),
                              echo=False)
    with LiveView(console, sweeping=True, metric="eval_accuracy") as view:
        tracker.callback = view.update
        tracker.trial("trial-aaa", {"training.learningRate": 0.001})
        tracker.handle(_event("trial-aaa", 5, 0.75, lr=0.001))
    text = console.export_text()
    assert "trial-aaa" in text and "learningRate=0.001" in text and "0.7500" in text


def _run_args(file: Path, *overrides: str, workers: int | None = None, output: str | None = None):
    return argparse.Namespace(file=str(file), overrides=list(overrides), workers=workers, output=output)


def test_finetune_run_applies_overrides_and_makes_paths_absolute(tmp_path, monkeypatch):
    from finetune_operator.cli.run import load_job

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("text,label\na,x\n")
    (tmp_path / "model").mkdir()
    manifest = tmp_path / "job.yaml"
    manifest.write_text(
        "apiVersion: finetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: j}\n"
        "spec:\n  model: {source: model}\n  data: {train: data/train.csv}\n  output: {uri: outputs}\n")
    monkeypatch.chdir(tmp_path)
    job = load_job(_run_args(manifest, "training.learningRate=3e-5", "spec.training.epochs=1", workers=3))
    assert job.spec.training.learning_rate == 3e-5 and job.spec.training.epochs == 1
    assert job.spec.resources.workers == 3
    assert job.spec.data.train == str(tmp_path / "data" / "train.csv")
    assert job.spec.model.source == str(tmp_path / "model")
    assert job.spec.output.uri == str(tmp_path / "outputs")
    assert load_job(_run_args(manifest, output="s3://bucket/x")).spec.output.uri == "s3://bucket/x"


def test_finetune_run_rejects_bad_overrides_by_name(tmp_path):
    from finetune_operator.cli.run import load_job
    from finetune_operator.errors import UserError

    manifest = tmp_path / "job.yaml"
    manifest.write_text(
        "apiVersion: finetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: j}\n"
        "spec:\n  model: {source: hub/model}\n  data: {train: s3://b/train.csv}\n  output: {uri: s3://b/out}\n")
    with pytest.raises(UserError, match="expected PATH=VALUE"):
        load_job(_run_args(manifest, "training.learningRate"))
    with pytest.raises(UserError, match=r"spec.training.learningRate"):
        load_job(_run_args(manifest, "training.learningRate=-1"))
    with pytest.raises(UserError, match="--workers: must be 1 or more"):
        load_job(_run_args(manifest, workers=0))


def test_sweep_settings_map_to_ray_tune_objects():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch
    from ray.tune.search.sample import Categorical, Float, Integer

    from finetune_trainer.sweeps import _domain, _scheduler, _search_alg, trial_count

    def job(algorithm: str, scheduler: str, space: dict):
        return job_config(tune={"searchSpace": space, "searchAlgorithm": algorithm, "numTrials": 3,
                                "scheduler": {"name": scheduler, "gracePeriod": 2, "reductionFactor": 3},
                                "metric": "eval_accuracy", "mode": "max"})

    space = {"training.learningRate": {"type": "loguniform", "min": 1e-5, "max": 1e-3},
             "training.batchSize": {"type": "choice", "values": [8, 16]},
             "strategy.lora.r": {"type": "randint", "min": 4, "max": 16}}
    bayes = job("bayesian", "asha", {k: v for k, v in space.items() if not k.startswith("strategy")})
    assert isinstance(_search_alg(bayes), OptunaSearch)
    capped = _search_alg(bayes, 2)
    assert isinstance(capped, ConcurrencyLimiter) and capped.max_concurrent == 2
    assert isinstance(capped.searcher, OptunaSearch)
    assert isinstance(_scheduler(bayes), ASHAScheduler)
    assert isinstance(_scheduler(job("random", "pbt", {"training.learningRate": space["training.learningRate"]})),
                      PopulationBasedTraining)
    assert isinstance(_scheduler(job("random", "fifo", {"training.batchSize": space["training.batchSize"]})),
                      FIFOScheduler)
    from finetune_trainer.config import SearchDimension

    assert isinstance(_domain(SearchDimension.model_validate(space["training.learningRate"])), Float)
    assert isinstance(_domain(SearchDimension.model_validate(space["training.batchSize"])), Categorical)
    assert isinstance(_domain(SearchDimension.model_validate(space["strategy.lora.r"])), Integer)
    grid = job("grid", "fifo", {"training.batchSize": {"type": "grid", "values": [8, 16, 32]}})
    assert trial_count(grid) == 9  # 3 repetitions of a 3-point grid


def test_asha_gets_the_specs_grace_period_and_reduction_factor(monkeypatch):
    """What we hand Ray: the spec's ASHA settings, on Tune's own iteration counter."""
    import ray.tune.schedulers as schedulers

    from finetune_trainer.sweeps import _scheduler

    made = []

    class RecordingASHA(schedulers.ASHAScheduler):
        def __init__(self, **kwargs):
            made.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(schedulers, "ASHAScheduler", RecordingASHA)
    job = job_config(tune={"searchSpace": {"training.batchSize": {"type": "choice", "values": [8, 16]}},
                           "numTrials": 3, "scheduler": {"name": "asha", "gracePeriod": 2, "reductionFactor": 3}})
    assert isinstance(_scheduler(job), RecordingASHA)
    [kwargs] = made
    assert (kwargs["grace_period"], kwargs["reduction_factor"], kwargs["time_attr"]) == (2, 3, "training_iteration")


def _seeded_search_job(seed: int, algorithm: str = "random"):
    return job_config(training={"seed": seed},
                      tune={"searchSpace": {"training.learningRate": {"type": "loguniform", "min": 1e-5, "max": 1e-3}},
                            "searchAlgorithm": algorithm, "numTrials": 4})


def test_searches_are_seeded(ray_local, tmp_path):
    """The same spec samples the same trials whatever the cap on trials at once;
    another seed samples others."""
    from ray import tune

    from finetune_trainer.sweeps import _domain, _search_alg

    def sampled(seed: int, run: str, concurrency: int) -> list[float]:
        def trainable(config: dict) -> None:
            tune.report({"lr": config["training.learningRate"], "eval_loss": 1.0})

        job = _seeded_search_job(seed)
        space = {path: _domain(dimension) for path, dimension in job.config.tune.search_space.items()}
        tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 0.25}), param_space=space,
                           tune_config=tune.TuneConfig(search_alg=_search_alg(job, concurrency), num_samples=4,
                                                       metric="eval_loss", mode="min"),
                           run_config=tune.RunConfig(storage_path=str(tmp_path / run / "ray"), verbose=0))
        return sorted(result.metrics["lr"] for result in tuner.fit())

    first = sampled(7, "first", concurrency=1)
    assert len(set(first)) == 4 and all(1e-5 <= lr <= 1e-3 for lr in first)
    assert sampled(7, "again", concurrency=2) == first
    assert sampled(8, "other", concurrency=2) != first


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_search_algorithms_hold_the_cap_on_trials_at_once(algorithm):
    """Counted, not timed: drive the search algorithm as Tune's controller does and
    count the trials it hands out while none has finished (Tune ignores
    max_concurrent_trials beside a BasicVariantGenerator, so the algorithm itself
    must hold the cap)."""
    from ray.tune.search import SearchAlgorithm, SearchGenerator

    from finetune_trainer.sweeps import _domain, _search_alg

    def trainable(config: dict) -> None:
        raise AssertionError("never run: only the search algorithm is exercised")

    def live_trials(cap: int) -> tuple[int, bool]:
        """(trials handed out before any finished, whether one more comes after one finishes)"""
        job = _seeded_search_job(7, algorithm)
        space = {path: _domain(dimension) for path, dimension in job.config.tune.search_space.items()}
        search = _search_alg(job, cap)
        if not isinstance(search, SearchAlgorithm):
            search = SearchGenerator(search)
        search.set_search_properties("eval_loss", "min", space)
        search.add_configurations({"sweep": {"run": trainable, "config": space, "num_samples": 4}})
        live = []
        while (trial := search.next_trial()) is not None:
            live.append(trial)
        search.on_trial_complete(live[0].trial_id, result={"eval_loss": 1.0, "training_iteration": 1})
        return len(live), search.next_trial() is not None

    assert live_trials(1) == (1, True)
    assert live_trials(2) == (2, True)
    assert live_trials(0) == (4, False)  # uncapped: all four at once, so the count can see a missing cap
