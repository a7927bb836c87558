"""Sweep efficiency: the same 8 learning-rate trials run under ASHA and under FIFO
(every trial to completion), all-MiniLM-L6-v2 on SST-2, 1 worker per trial.

Trials are ranked by validation loss; the figure compares the best final dev accuracy.
Figures: best dev accuracy of ASHA minus FIFO (target within 1 point) and ASHA's
worker-seconds as a share of FIFO's (target <= 60%). Worker-seconds are each trial's
wall time (Tune's time_total_s, start-up included) x its workers.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

LEARNING_RATES = [1e-5, 2e-5, 3e-5, 5e-5, 8e-5, 1.2e-4, 2e-4, 3e-4]
STEPS = int(os.environ.get("BENCH_SWEEP_STEPS", "24"))
BATCH = 16
DEV_ROWS = 200


def _dev_subset(directory: Path) -> str:
    """The first DEV_ROWS dev sentences, written to a scratch folder (not the project)."""
    from bench._trainer_common import sst2_sentences

    path = directory / "dev-subset.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "label"])
        writer.writerows(sst2_sentences("dev", limit=DEV_ROWS))
    return str(path)


def run_sweep(scheduler: str, scratch: Path) -> dict[str, float]:
    import ray

    from bench._trainer_common import minilm_job, start_ray
    from finetune_trainer.runner import run_job

    # 4 logical CPUs: two 1-worker trials plus their drivers and Ray Train's own
    # helper actors run side by side on the 2 real cores.
    start_ray(num_cpus=4)
    try:
        training = {"maxSteps": STEPS, "batchSize": BATCH, "learningRate": 5e-5, "seed": 42,
                    "evaluation": {"every": 4, "unit": "step"}, "checkpoint": {"every": 4, "unit": "step"}}
        tune = {"searchSpace": {"training.learningRate": {"type": "grid", "values": LEARNING_RATES}},
                "searchAlgorithm": "grid", "numTrials": 1,
                "scheduler": {"name": scheduler, "gracePeriod": 1, "reductionFactor": 2},
                # ASHA ranks by validation loss: accuracy ties at chance early on, and
                # ties never fall below ASHA's cutoff.
                "metric": "eval_loss", "mode": "min"}
        job = minilm_job(f"bench-sweep-{scheduler}", str(scratch / scheduler), training=training, workers=1,
                         max_samples=STEPS * BATCH, validation=_dev_subset(scratch), tune=tune)
        result = run_job(job, echo=False)
        trials = json.loads((scratch / scheduler / job.name / "trials.json").read_text())["trials"]
        worker_seconds = sum(float(t["metrics"].get("time_total_s") or 0.0) for t in trials)
        best = max(float(t["metrics"].get("eval_accuracy") or 0.0) for t in trials)
        return {"best": best, "worker_seconds": worker_seconds, "completed": sum(t["status"] == "completed"
                                                                                 for t in trials)}
    finally:
        ray.shutdown()


def main() -> None:
    print(f"8 trials (learning rates {LEARNING_RATES}), {STEPS} steps x batch {BATCH} each, evaluation every 4 "
          f"steps on {DEV_ROWS} SST-2 dev sentences (machine shared: timings are noisy)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        fifo = run_sweep("fifo", Path(scratch))
        print(f"baseline: FIFO: best dev accuracy {fifo['best']:.4f}, {fifo['worker_seconds']:.0f} worker-s, "
              f"{fifo['completed']} trials ran to the end", flush=True)
        asha = run_sweep("asha", Path(scratch))
        print(f"ours: ASHA: best dev accuracy {asha['best']:.4f}, {asha['worker_seconds']:.0f} worker-s, "
              f"{asha['completed']} trials ran to the end", flush=True)
    print(f"figure: best accuracy ASHA - FIFO = {100 * (asha['best'] - fifo['best']):+.2f} points (target >= -1); "
          f"worker-seconds ASHA/FIFO = {asha['worker_seconds'] / fifo['worker_seconds']:.2f} (target <= 0.60)",
          flush=True)


if __name__ == "__main__":
    main()
