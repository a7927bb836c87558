"""Causal-LM instruction tuning: the project's tiny chat Llama (a random 2-layer Llama
with the word-level tokenizer and chat template `demo_chat` writes) tuned on the
project's own chat data (support messages and the team that takes them), written
into a temporary folder. Three arms on the same model files, data and token budget,
one after the other in this run:

- ours, packing off: our trainer (`run_job`, embedded Ray, 1 worker, 1 thread);
- ours, packing on: the same, `causalLm.packing: true` (whole conversations packed
  into sequences of up to MAX_LEN tokens, attention kept inside each);
- the baseline: a plain transformers `Trainer` (1 process, 1 thread) on the same
  conversations, tokenised here with the tokenizer's own chat template, the prompt
  tokens' labels -100 (the loss on the assistant turn and its end-of-sequence token,
  as ours), padded per batch, with the same epochs, batch, learning rate, schedule,
  weight decay, gradient clipping and seed.

Figures, each beside the baseline of this run:
- training throughput in non-pad tokens per second (ours: the loop's own count over
  its training time; the baseline: the training set's tokens x epochs over the
  Trainer's loop, timed alike from after set-up to the last step). Targets: ours
  without packing >= 0.95 x the baseline; with packing, above both;
- validation loss (mean over answer tokens) and perplexity after the same budget,
  every model scored here by one function on the same validation conversations
  (ours' own reported eval_loss is printed beside it as a cross-check). Target: ours
  without packing within 1% of the baseline. Packing takes fewer, fuller optimizer
  steps for the same tokens, so its loss is reported, not held to the target.

Every arm runs once per seed of `BENCH_CAUSAL_LM_SEEDS` (default 42,43: data order),
interleaved; the losses are the mean over the seeds, the throughput each arm's best
run (the machine is shared: the least disturbed one). Every arm runs at a Ray
worker's niceness (the baseline in a process of its own) and on one thread: on this
loaded 2-core machine two threads per process made a step of the tiny model 10-17x
slower (OpenMP threads waiting on each other), in whichever arm had them.

`BENCH_CAUSAL_LM_CONVERSATIONS` (default 1200) sets how many conversations are
written (15% held out for validation), `BENCH_CAUSAL_LM_EPOCHS` (default 2) the epochs
of every arm; a smoke run: 200, 1 and one seed.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

CONVERSATIONS = int(os.environ.get("BENCH_CAUSAL_LM_CONVERSATIONS", "1200"))
EPOCHS = float(os.environ.get("BENCH_CAUSAL_LM_EPOCHS", "2"))
SEEDS = [int(s) for s in os.environ.get("BENCH_CAUSAL_LM_SEEDS", "42,43").split(",") if s.strip()]
BATCH = 8
LEARNING_RATE = 3e-3
MAX_LEN = 96
THREADS = 1
IGNORE = -100


def write_inputs(root: Path) -> dict[str, Path]:
    """The chat splits and the tiny model, as `python -m finetune_trainer.demo_chat`
    writes them (its defaults, except the number of conversations)."""
    from finetune_trainer.demo_chat import (conversation_texts, conversations, write_chat_splits,
                                            write_tiny_causal_lm)

    paths = write_chat_splits(root / "data", total=CONVERSATIONS)
    paths["model"] = write_tiny_causal_lm(root / "model", conversation_texts(conversations(CONVERSATIONS)))
    return paths


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def tokenize_conversation(messages: list[dict[str, str]], tokenizer) -> dict[str, list[int]]:
    """Input ids and labels of one conversation, written here for the baseline: the
    chat template's rendering, with every token before the final assistant turn
    masked (the demo conversations have one assistant turn, the last message)."""
    assert messages[-1]["role"] == "assistant" and sum(m["role"] == "assistant" for m in messages) == 1
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    whole = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(whole, add_special_tokens=False)["input_ids"]
    assert ids[:len(prompt_ids)] == prompt_ids, "the template does not render the prompt as a prefix"
    labels = [IGNORE] * len(prompt_ids) + ids[len(prompt_ids):]
    return {"input_ids": ids[:MAX_LEN], "labels": labels[:MAX_LEN]}


def encoded(path: Path, tokenizer) -> list[dict[str, list[int]]]:
    return [tokenize_conversation(record["messages"], tokenizer) for record in read_jsonl(path)]


def validation_loss(model, items: list[dict[str, list[int]]]) -> float:
    """Mean next-token cross-entropy over every labelled token of `items` (token-
    weighted, so batching does not change it), the same for every arm."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for item in items:
            ids = torch.tensor([item["input_ids"]])
            labels = torch.tensor(item["labels"][1:])
            logits = model(input_ids=ids).logits[0, :-1]
            keep = labels != IGNORE
            total += float(F.cross_entropy(logits[keep].float(), labels[keep], reduction="sum"))
            count += int(keep.sum())
    return total / count


def baseline_hf_trainer(paths: dict[str, Path], seed: int) -> dict[str, float]:
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments, set_seed)

    from bench._trainer_common import training_clock

    torch.set_num_threads(THREADS)
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(paths["model"])
    model = AutoModelForCausalLM.from_pretrained(paths["model"])
    model.config.use_cache = False
    train = encoded(paths["train"], tokenizer)
    with tempfile.TemporaryDirectory(prefix="bench-causal-hf-") as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=BATCH, num_train_epochs=EPOCHS,
                                 learning_rate=LEARNING_RATE, weight_decay=0.0, lr_scheduler_type="linear",
                                 warmup_steps=0, max_grad_norm=1.0, save_strategy="no", eval_strategy="no",
                                 report_to=[], seed=seed, use_cpu=True, logging_strategy="no", disable_tqdm=True,
                                 dataloader_drop_last=False)
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE, return_tensors="pt")
        clock = training_clock()
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator, callbacks=[clock])
        output = trainer.train()
    runtime = clock.seconds
    tokens = sum(len(item["input_ids"]) for item in train) * EPOCHS
    return {"tokens_per_second": tokens / runtime, "steps": output.global_step,
            "eval_loss": validation_loss(model, encoded(paths["validation"], tokenizer))}


def ours(paths: dict[str, Path], packing: bool, seed: int, out: str) -> dict[str, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench._trainer_common import LatestReport
    from finetune_trainer.config import JobConfig
    from finetune_trainer.runner import run_job

    name = f"bench-causal-{'packed' if packing else 'padded'}"
    never = {"every": 1_000_000, "unit": "step"}  # one report, at the end: the whole run's throughput
    config = {"model": {"source": str(paths["model"]), "task": "causal-lm"},
              "data": {"train": str(paths["train"]), "validation": str(paths["validation"]),
                       "maxSeqLength": MAX_LEN},
              "causalLm": {"format": "chat", "packing": packing},
              "strategy": {"type": "full"},
              "training": {"epochs": EPOCHS, "batchSize": BATCH, "learningRate": LEARNING_RATE,
                           "weightDecay": 0.0, "scheduler": {"name": "linear"}, "maxGradNorm": 1.0, "seed": seed,
                           "evaluation": never, "checkpoint": never},
              "output": {"uri": out, "keepCheckpoints": 1}}
    job = JobConfig.model_validate({"name": name, "config": config,
                                    "scaling": {"numWorkers": 1, "cpusPerWorker": THREADS}})
    latest = LatestReport()
    result = run_job(job, echo=False, progress_callback=latest)
    tokenizer = AutoTokenizer.from_pretrained(paths["model"])
    model = AutoModelForCausalLM.from_pretrained(Path(out) / name / "model")
    return {"tokens_per_second": float(latest.values["tokens_per_second"]),
            "eval_loss": validation_loss(model, encoded(paths["validation"], tokenizer)),
            "reported_eval_loss": float(result.metrics["eval_loss"]), "steps": int(result.metrics["steps"])}


def _line(name: str, arm: dict[str, float], base: dict[str, float]) -> str:
    speed = arm["tokens_per_second"] / base["tokens_per_second"]
    text = (f"{name}: {arm['tokens_per_second']:.0f} tokens/s ({speed:.2f} x baseline), validation loss "
            f"{arm['eval_loss']:.4f} (perplexity {math.exp(arm['eval_loss']):.2f}; "
            f"{100 * (arm['eval_loss'] / base['eval_loss'] - 1):+.2f}% vs baseline), {arm['steps']} steps")
    if "reported_eval_loss" in arm:
        text += f"; the trainer's own eval_loss {arm['reported_eval_loss']:.4f}"
    return text


def run_arms(paths: dict[str, Path], out: Path) -> dict[str, list[dict[str, float]]]:
    """Every arm once per seed, interleaved (baseline, ours without packing, ours with),
    so a burst of load from other users of the machine does not land on one arm only."""
    from bench._trainer_common import run_like_a_ray_worker

    arms: dict[str, list[dict[str, float]]] = {"baseline": [], "ours, packing off": [],
                                               "ours, packing on": []}
    for seed in SEEDS:
        base = run_like_a_ray_worker(baseline_hf_trainer, paths, seed)
        arms["baseline"].append(base)
        print(f"[seed {seed}] baseline: transformers Trainer: {base['tokens_per_second']:.0f} "
              f"tokens/s, validation loss {base['eval_loss']:.4f} (perplexity {math.exp(base['eval_loss']):.2f}), "
              f"{base['steps']} steps", flush=True)
        for packing in (False, True):
            label = f"ours, packing {'on' if packing else 'off'}"
            arm = ours(paths, packing, seed, str(out / str(seed)))
            arms[label].append(arm)
            print(f"[seed {seed}] " + _line(label, arm, base), flush=True)
    return arms


def main() -> None:
    import ray

    from bench._trainer_common import start_ray

    with tempfile.TemporaryDirectory(prefix="bench-causal-") as scratch:
        paths = write_inputs(Path(scratch))
        print(f"tiny chat Llama (demo_chat), {len(read_jsonl(paths['train']))} training / "
              f"{len(read_jsonl(paths['validation']))} validation conversations, {EPOCHS:g} epochs, "
              f"batch {BATCH}, lr {LEARNING_RATE}, max length {MAX_LEN}, loss on the assistant turn only, "
              f"{THREADS} thread at niceness 15 in every arm, seeds {SEEDS} interleaved (machine shared: "
              "timings are noisy)",
              flush=True)
        # Ray first, so its idle processes run beside every arm, the baseline's too.
        start_ray(num_cpus=THREADS + 1)
        try:
            runs = run_arms(paths, Path(scratch) / "out")
        finally:
            ray.shutdown()
    speed = {name: max(r["tokens_per_second"] for r in arm) for name, arm in runs.items()}
    loss = {name: statistics.mean(r["eval_loss"] for r in arm) for name, arm in runs.items()}
    print(f"best of {len(SEEDS)} runs: " + ", ".join(f"{name} {value:.0f} tokens/s" for name, value in speed.items()),
          flush=True)
    print(f"mean of {len(SEEDS)} seeds: " + ", ".join(f"{name} validation loss {value:.4f} (perplexity "
                                                       f"{math.exp(value):.2f})" for name, value in loss.items()),
          flush=True)
    print(f"figure: tokens/s ours without packing / baseline = {speed['ours, packing off'] / speed['baseline']:.2f} "
          f"(target >= 0.95); with packing / baseline = {speed['ours, packing on'] / speed['baseline']:.2f}, "
          f"/ ours without = {speed['ours, packing on'] / speed['ours, packing off']:.2f} (target > 1 for both)",
          flush=True)
    print(f"figure: validation loss ours without packing vs baseline = "
          f"{100 * (loss['ours, packing off'] / loss['baseline'] - 1):+.2f}% (target within 1%)", flush=True)


if __name__ == "__main__":
    main()
