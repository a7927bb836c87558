"""Sweep efficiency: the same 8 learning-rate trials run under ASHA and under FIFO
(every trial to completion), all-MiniLM-L6-v2 on SST-2, 1 worker per trial, 2 trials
at a time (the machine has 2 cores).

Both arms sample the same 8 learning rates: random search is seeded by the training
seed. Trials are ranked by validation accuracy (the first VALIDATION_ROWS dev
sentences); the sweep's chosen model is then scored once on the remaining dev
sentences, which no trial saw. Figures: that held-out accuracy, ASHA minus FIFO
(target within 1 point), and ASHA's worker-seconds as a share of FIFO's (target
<= 60%). Worker-seconds are each trial's wall time (Tune's time_total_s, start-up
included) x its workers.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

TRIALS = 8
LR_RANGE = (1e-5, 3e-4)
STEPS = int(os.environ.get("BENCH_SWEEP_STEPS", "96"))
EVAL_EVERY = max(1, STEPS // 8)
BATCH = 16
VALIDATION_ROWS = 300
# ASHA with Ray's defaults: the first rung after one evaluation, then x4 (rungs at 1
# and 4 evaluations; 8 is the end). With 96-step trials, start-up is a large fixed share
# of each trial, so only stopping trials early saves worker-seconds.
GRACE_PERIOD = 1
REDUCTION_FACTOR = 4


def _dev_splits(directory: Path) -> tuple[str, str]:
    """Dev sentences split into validation (ranking) and test (held-out score) files in
    a scratch folder, never the project."""
    from bench._trainer_common import sst2_sentences

    rows = sst2_sentences("dev")
    paths = []
    for name, part in (("validation", rows[:VALIDATION_ROWS]), ("test", rows[VALIDATION_ROWS:])):
        path = directory / f"dev-{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sentence", "label"])
            writer.writerows(part)
        paths.append(str(path))
    return paths[0], paths[1]


def run_sweep(scheduler: str, scratch: Path) -> dict:
    import ray

    from bench._trainer_common import minilm_job, start_ray
    from finetune_trainer.runner import run_job

    # Two 1-worker trials (1 CPU each) and their drivers (a quarter CPU each) at once.
    start_ray(num_cpus=3)
    try:
        validation, test = _dev_splits(scratch)
        training = {"maxSteps": STEPS, "batchSize": BATCH, "learningRate": 5e-5, "seed": 42,
                    "evaluation": {"every": EVAL_EVERY, "unit": "step"},
                    "checkpoint": {"every": EVAL_EVERY, "unit": "step"}}
        tune = {"searchSpace": {"training.learningRate": {"type": "loguniform", "min": LR_RANGE[0],
                                                          "max": LR_RANGE[1]}},
                "searchAlgorithm": "random", "numTrials": TRIALS, "maxConcurrentTrials": 2,
                "scheduler": {"name": scheduler, "gracePeriod": GRACE_PERIOD, "reductionFactor": REDUCTION_FACTOR},
                "metric": "eval_accuracy", "mode": "max"}
        job = minilm_job(f"bench-sweep-{scheduler}", str(scratch / scheduler), training=training, workers=1,
                         max_samples=STEPS * BATCH, validation=validation, test=test, tune=tune)
        result = run_job(job, echo=False)
        trials = json.loads((scratch / scheduler / job.name / "trials.json").read_text())["trials"]
        return {
            "test_accuracy": float(result.metrics["test_accuracy"]),
            "eval_accuracy": float(result.metrics["eval_accuracy"]),
            "worker_seconds": job.scaling.num_workers * sum(float(t["metrics"].get("time_total_s") or 0.0)
                                                           for t in trials),
            "steps": sum(int(t.get("steps") or 0) for t in trials),
            "completed": sum(t["status"] == "completed" for t in trials),
            "learning_rates": sorted(float(t["hyperparameters"]["training.learningRate"]) for t in trials),
            "best_lr": (result.best_trial or {}).get("hyperparameters", {}).get("training.learningRate"),
        }
    finally:
        ray.shutdown()


def _line(label: str, figures: dict) -> str:
    return (f"{label}: held-out dev accuracy {figures['test_accuracy']:.4f} (validation "
            f"{figures['eval_accuracy']:.4f}, learning rate {figures['best_lr']:.2e}), "
            f"{figures['worker_seconds']:.0f} worker-s, {figures['steps']} training steps, "
            f"{figures['completed']}/{TRIALS} trials ran to the end")


def main() -> None:
    print(f"{TRIALS} trials (learning rate log-uniform in {LR_RANGE}, seeded), {STEPS} steps x batch {BATCH} "
          f"each, validation every {EVAL_EVERY} steps on {VALIDATION_ROWS} SST-2 dev sentences; "
          "machine shared: timings are noisy", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        fifo = run_sweep("fifo", Path(scratch))
        print(_line("baseline: FIFO", fifo), flush=True)
        asha = run_sweep("asha", Path(scratch))
        print(_line("ours: ASHA", asha), flush=True)
    if asha["learning_rates"] != fifo["learning_rates"]:
        print("warning: the two arms sampled different learning rates", flush=True)
    print(f"figure: held-out dev accuracy ASHA - FIFO = {100 * (asha['test_accuracy'] - fifo['test_accuracy']):+.2f} "
          f"points (target >= -1); worker-seconds ASHA/FIFO = "
          f"{asha['worker_seconds'] / fifo['worker_seconds']:.2f} (target <= 0.60)", flush=True)


if __name__ == "__main__":
    main()
