"""Quality: all-MiniLM-L6-v2 `full` fine-tune on the same 2,000 SST-2 training
sentences for one epoch, scored on the SST-2 dev split, by our Ray trainer (2 workers)
and by a plain transformers Trainer with the same budget and hyperparameters, over
several seeds.

Both arms read exactly the same training rows: the first SAMPLES distinct sentences of
SST-2's train split, written to a temporary JSONL file (read from ../shared, never kept in
the project). The seed sets the new head's initial weights, dropout and data order in
both arms.

Figures: each arm's dev accuracy per seed, its mean and sample standard deviation, and
ours minus the baseline's mean in points (target: ours >= theirs on the mean). Also
prints both runs' training samples/s.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

SAMPLES = int(os.environ.get("BENCH_QUALITY_SAMPLES", "2000"))
SEEDS = [int(s) for s in os.environ.get("BENCH_QUALITY_SEEDS", "42,43,44").split(",") if s.strip()]
GLOBAL_BATCH = 32
LEARNING_RATE = 5e-5
MAX_LEN = 64


def training_rows() -> list[tuple[str, int]]:
    """The first SAMPLES distinct training sentences (our trainer drops duplicate rows,
    so the baseline gets the same de-duplicated list)."""
    from bench._trainer_common import sst2_sentences

    seen: set[str] = set()
    rows = []
    for text, label in sst2_sentences("train"):
        if text in seen:
            continue
        seen.add(text)
        rows.append((text, label))
        if len(rows) >= SAMPLES:
            break
    return rows


def write_jsonl(rows: list[tuple[str, int]], path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for text, label in rows:
            handle.write(json.dumps({"sentence": text, "label": label}) + "\n")
    return path


def baseline_hf_trainer(rows: list[tuple[str, int]], seed: int) -> dict[str, float]:
    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    from bench._trainer_common import sst2_sentences, tokenized_rows
    from finetune_trainer.modeling import minilm_path

    torch.set_num_threads(2)
    set_seed(seed)
    path = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)

    train = tokenized_rows(rows, tokenizer, MAX_LEN)
    dev = tokenized_rows(sst2_sentences("dev"), tokenizer, MAX_LEN)
    with tempfile.TemporaryDirectory(prefix="bench-hf-") as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=GLOBAL_BATCH, num_train_epochs=1,
                                 learning_rate=LEARNING_RATE, weight_decay=0.01, warmup_steps=0.1,
                                 lr_scheduler_type="linear", max_grad_norm=1.0, save_strategy="no",
                                 eval_strategy="no", report_to=[], seed=seed, use_cpu=True,
                                 per_device_eval_batch_size=64, logging_strategy="no", disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=train,
                          data_collator=DataCollatorWithPadding(tokenizer, return_tensors="pt"),
                          compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())})
        output = trainer.train()
        scores = trainer.evaluate(dev)
    return {"dev_accuracy": scores["eval_accuracy"], "samples_per_second": output.metrics["train_samples_per_second"]}


def ours(train_file: Path, seed: int) -> dict[str, float]:
    from bench._trainer_common import minilm_job, sst2_file
    from finetune_trainer.runner import run_job

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as out:
        training = {"epochs": 1, "batchSize": GLOBAL_BATCH // 2, "learningRate": LEARNING_RATE,
                    "weightDecay": 0.01, "scheduler": {"name": "linear", "warmupRatio": 0.1}, "seed": seed}
        job = minilm_job(f"bench-quality-{seed}", out, training=training, workers=2, max_samples=None,
                         validation=str(sst2_file("dev")), max_seq_length=MAX_LEN, train=str(train_file))
        result = run_job(job, echo=False)
        return {"dev_accuracy": result.metrics["eval_accuracy"],
                "samples_per_second": result.metrics["train_samples_per_second"]}


def _summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"mean {statistics.mean(values):.4f} ± {spread:.4f} (sd over {len(values)} seeds)"


def main() -> None:
    import ray

    from bench._trainer_common import start_ray

    rows = training_rows()
    print(f"MiniLM full fine-tune, the same {len(rows)} SST-2 sentences in both arms, 1 epoch, global batch "
          f"{GLOBAL_BATCH}, lr {LEARNING_RATE}, seeds {SEEDS}; scored on SST-2 dev (machine shared: timings "
          "are noisy)", flush=True)
    base: list[dict[str, float]] = []
    mine: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-quality-rows-") as scratch:
        train_file = write_jsonl(rows, Path(scratch) / "train.jsonl")
        for seed in SEEDS:
            result = baseline_hf_trainer(rows, seed)
            base.append(result)
            print(f"seed {seed} baseline: transformers Trainer (1 process, 2 threads): dev accuracy "
                  f"{result['dev_accuracy']:.4f}, {result['samples_per_second']:.1f} samples/s", flush=True)
        start_ray(num_cpus=3)
        try:
            for seed in SEEDS:
                result = ours(train_file, seed)
                mine.append(result)
                print(f"seed {seed} ours: Ray trainer (2 workers x 1 thread): dev accuracy "
                      f"{result['dev_accuracy']:.4f}, {result['samples_per_second']:.1f} samples/s", flush=True)
        finally:
            ray.shutdown()
    base_acc = [r["dev_accuracy"] for r in base]
    mine_acc = [r["dev_accuracy"] for r in mine]
    print(f"baseline dev accuracy: {_summary(base_acc)}", flush=True)
    print(f"ours dev accuracy:     {_summary(mine_acc)}", flush=True)
    delta = 100 * (statistics.mean(mine_acc) - statistics.mean(base_acc))
    print(f"figure: mean dev accuracy difference ours - baseline = {delta:+.2f} points (target >= 0)", flush=True)


if __name__ == "__main__":
    main()
