"""FSDP against DDP: our loop on 2 workers training all-MiniLM-L6-v2 on the same SST-2
sentences (sequence length 64, global batch 32, one thread per worker), once with
`scaling.distributed: ddp` and once with `fsdp`, one after the other in this run.

Figures, each arm beside the other: training samples/s, the parameter bytes one worker
holds (the largest worker's), and its peak memory (allocated GPU memory on a GPU; on
a CPU the process's peak resident set, which Python and the libraries dominate, so
the parameter figure is the one that shows the sharding there).

`BENCH_FSDP_STEPS` sets the steps of each arm (default 40); a smoke run: 3.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

STEPS = int(os.environ.get("BENCH_FSDP_STEPS", "40"))
GLOBAL_BATCH = 32
WORKERS = 2


def run_arm(distributed: str, steps: int) -> dict[str, Any]:
    """(samples/s, worker parameter bytes, model parameter bytes, worker peak memory)
    of one run of our loop under `distributed`."""
    import ray

    from bench._trainer_common import minilm_job, start_ray
    from finetune_trainer.config import JobConfig
    from finetune_trainer.runner import run_job

    latest: dict[str, Any] = {}

    def keep_latest(report, trials) -> None:
        if "run" in trials and trials["run"].latest:
            latest.clear()
            latest.update(trials["run"].latest)

    start_ray(num_cpus=WORKERS + 1)
    try:
        with tempfile.TemporaryDirectory(prefix=f"bench-{distributed}-") as out:
            training = {"maxSteps": steps, "batchSize": GLOBAL_BATCH // WORKERS, "learningRate": 5e-5,
                        "evaluation": {"every": 10_000, "unit": "step"},
                        "checkpoint": {"every": 10_000, "unit": "step"}}
            job = minilm_job(f"bench-{distributed}", out, training=training, workers=WORKERS,
                             max_samples=steps * GLOBAL_BATCH + GLOBAL_BATCH)
            document = job.to_dict()
            document["scaling"]["distributed"] = distributed
            result = run_job(JobConfig.model_validate(document), echo=False, progress_callback=keep_latest)
    finally:
        ray.shutdown()
    return {"samples_per_second": float(result.metrics["train_samples_per_second"]),
            "worker_parameter_bytes": int(latest["worker_parameter_bytes"]),
            "model_parameter_bytes": int(latest["model_parameter_bytes"]),
            "worker_peak_memory_bytes": int(latest["worker_peak_memory_bytes"])}


def main() -> None:
    print(f"MiniLM, seq len <= 64, global batch {GLOBAL_BATCH}, {WORKERS} workers x 1 thread, {STEPS} steps per arm "
          "(machine shared with other jobs: throughput is noisy)", flush=True)
    arms = {name: run_arm(name, STEPS) for name in ("ddp", "fsdp")}
    mb = 1e6
    for name, arm in arms.items():
        print(f"{name}: {arm['samples_per_second']:.1f} samples/s; per worker "
              f"{arm['worker_parameter_bytes'] / mb:.1f} of {arm['model_parameter_bytes'] / mb:.1f} MB of parameters, "
              f"peak memory {arm['worker_peak_memory_bytes'] / mb:.0f} MB", flush=True)
    ddp, fsdp = arms["ddp"], arms["fsdp"]
    print(f"figure: fsdp/ddp samples/s = {fsdp['samples_per_second'] / ddp['samples_per_second']:.2f}; "
          f"parameters per worker = {fsdp['worker_parameter_bytes'] / ddp['worker_parameter_bytes']:.2f}; "
          f"peak memory per worker = {fsdp['worker_peak_memory_bytes'] / ddp['worker_peak_memory_bytes']:.2f}",
          flush=True)


if __name__ == "__main__":
    main()
