"""Data-parallel overhead: our Ray Train loop (2 workers) against a plain
torch.multiprocessing gloo DDP loop, both training all-MiniLM-L6-v2 on the same SST-2
sentences (sequence length 64, global batch 32, one thread per process).

Figure: samples/s of ours / samples/s of the plain loop (target >= 0.95).
"""

from __future__ import annotations

import os
import tempfile
import time

STEPS = int(os.environ.get("BENCH_DP_STEPS", "30"))
GLOBAL_BATCH = 32
WORKERS = 2


def _plain_worker(rank: int, world: int, port: int, sentences, steps: int, result_queue) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from finetune_trainer.modeling import minilm_path

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(42)
    path = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model = DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    per_rank = GLOBAL_BATCH // world
    shard = sentences[rank::world]
    model.train()
    dist.barrier()
    started = time.perf_counter()
    for step in range(steps):
        rows = shard[step * per_rank:(step + 1) * per_rank]
        items = [dict(tokenizer(text, truncation=True, max_length=64), labels=label) for text, label in rows]
        batch = collate(items)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    dist.barrier()
    elapsed = time.perf_counter() - started
    if rank == 0:
        result_queue.put(steps * GLOBAL_BATCH / elapsed)
    dist.destroy_process_group()


def plain_ddp_samples_per_second(steps: int) -> float:
    import socket

    import torch.multiprocessing as mp

    from bench._trainer_common import sst2_sentences

    sentences = sst2_sentences("train", limit=steps * GLOBAL_BATCH + GLOBAL_BATCH)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    mp.start_processes(_plain_worker, args=(WORKERS, port, sentences, steps, queue), nprocs=WORKERS, join=True,
                       start_method="spawn")
    return float(queue.get(timeout=10))


def ours_samples_per_second(steps: int) -> float:
    import ray

    from bench._trainer_common import minilm_job, start_ray
    from finetune_trainer.runner import run_job

    start_ray(num_cpus=WORKERS + 1)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-dp-") as out:
            training = {"maxSteps": steps, "batchSize": GLOBAL_BATCH // WORKERS, "learningRate": 5e-5,
                        "evaluation": {"every": 10_000, "unit": "step"}, "checkpoint": {"every": 10_000, "unit": "step"}}
            job = minilm_job("bench-dp", out, training=training, workers=WORKERS,
                             max_samples=steps * GLOBAL_BATCH + GLOBAL_BATCH)
            result = run_job(job, echo=False)
            return float(result.metrics["train_samples_per_second"])
    finally:
        ray.shutdown()


def main() -> None:
    print(f"MiniLM, seq len <= 64, global batch {GLOBAL_BATCH}, {WORKERS} workers x 1 thread, {STEPS} steps "
          "(machine shared with other jobs: figures are noisy)", flush=True)
    baseline = plain_ddp_samples_per_second(STEPS)
    print(f"baseline: plain torch.multiprocessing gloo DDP loop: {baseline:.1f} samples/s", flush=True)
    ours = ours_samples_per_second(STEPS)
    print(f"ours: Ray Train V2 TorchTrainer loop: {ours:.1f} samples/s", flush=True)
    print(f"figure: ratio ours/baseline = {ours / baseline:.3f} (target >= 0.95)", flush=True)


if __name__ == "__main__":
    main()
