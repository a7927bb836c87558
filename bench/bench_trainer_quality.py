"""Quality: all-MiniLM-L6-v2 `full` fine-tune on 2,000 SST-2 training sentences for
one epoch, scored on the SST-2 dev split, by our Ray trainer (2 workers) and by a
plain transformers Trainer with the same budget and hyperparameters.

Figure: dev accuracy of ours minus the baseline's, in points (target >= -0.5).
Also prints both runs' training samples/s.
"""

from __future__ import annotations

import os
import tempfile

SAMPLES = int(os.environ.get("BENCH_QUALITY_SAMPLES", "2000"))
GLOBAL_BATCH = 32
LEARNING_RATE = 5e-5
MAX_LEN = 64


def _dev_csv(directory: str) -> str:
    """Our trainer reads the dev split in place (tsv); returned for symmetry."""
    from bench._trainer_common import sst2_file

    return str(sst2_file("dev"))


def baseline_hf_trainer() -> dict[str, float]:
    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from bench._trainer_common import sst2_sentences, tokenized_rows
    from finetune_trainer.modeling import minilm_path

    torch.set_num_threads(2)
    torch.manual_seed(42)
    path = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)

    train = tokenized_rows(sst2_sentences("train", limit=SAMPLES), tokenizer, MAX_LEN)
    dev = tokenized_rows(sst2_sentences("dev"), tokenizer, MAX_LEN)
    with tempfile.TemporaryDirectory(prefix="bench-hf-") as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=GLOBAL_BATCH, num_train_epochs=1,
                                 learning_rate=LEARNING_RATE, weight_decay=0.01, warmup_steps=0.1,
                                 lr_scheduler_type="linear", max_grad_norm=1.0, save_strategy="no",
                                 eval_strategy="no", report_to=[], seed=42, use_cpu=True,
                                 per_device_eval_batch_size=64, logging_strategy="no", disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=train,
                          data_collator=DataCollatorWithPadding(tokenizer, return_tensors="pt"),
                          compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())})
        output = trainer.train()
        scores = trainer.evaluate(dev)
    return {"dev_accuracy": scores["eval_accuracy"], "samples_per_second": output.metrics["train_samples_per_second"]}


def ours() -> dict[str, float]:
    import ray

    from bench._trainer_common import minilm_job, sst2_file, start_ray
    from finetune_trainer.runner import run_job

    start_ray(num_cpus=3)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-quality-") as out:
            training = {"epochs": 1, "batchSize": GLOBAL_BATCH // 2, "learningRate": LEARNING_RATE,
                        "weightDecay": 0.01, "scheduler": {"name": "linear", "warmupRatio": 0.1}, "seed": 42}
            job = minilm_job("bench-quality", out, training=training, workers=2, max_samples=SAMPLES,
                             validation=str(sst2_file("dev")), max_seq_length=MAX_LEN)
            result = run_job(job, echo=False)
            return {"dev_accuracy": result.metrics["eval_accuracy"],
                    "samples_per_second": result.metrics["train_samples_per_second"]}
    finally:
        ray.shutdown()


def main() -> None:
    print(f"MiniLM full fine-tune, {SAMPLES} SST-2 sentences, 1 epoch, global batch {GLOBAL_BATCH}, "
          f"lr {LEARNING_RATE}; scored on SST-2 dev (machine shared: timings are noisy)", flush=True)
    base = baseline_hf_trainer()
    print(f"baseline: transformers Trainer (1 process, 2 threads): dev accuracy {base['dev_accuracy']:.4f}, "
          f"{base['samples_per_second']:.1f} samples/s", flush=True)
    mine = ours()
    print(f"ours: Ray trainer (2 workers x 1 thread): dev accuracy {mine['dev_accuracy']:.4f}, "
          f"{mine['samples_per_second']:.1f} samples/s", flush=True)
    delta = 100 * (mine["dev_accuracy"] - base["dev_accuracy"])
    print(f"figure: dev accuracy difference ours - baseline = {delta:+.2f} points (target >= -0.5)", flush=True)


if __name__ == "__main__":
    main()
