"""Shared set-up of the trainer benchmarks: SST-2 from ../shared (read in place, never
copied), the MiniLM weights, a private local Ray, JobConfig building and a progress
callback that keeps the latest report."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Optional

SST2 = Path(os.environ.get("FINETUNE_SST2_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"))


def sst2_file(split: str) -> Path:
    path = SST2 / f"{split}.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"SST-2 {split} split not found at {path}; set FINETUNE_SST2_DIR")
    return path


def sst2_sentences(split: str, limit: Optional[int] = None) -> list[tuple[str, int]]:
    rows = []
    with open(sst2_file(split), newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            rows.append((row["sentence"], int(row["label"])))
            if limit and len(rows) >= limit:
                break
    return rows


def tokenized_rows(rows: list[tuple[str, int]], tokenizer, max_length: int):
    """(sentence, label) rows as a map-style torch dataset, tokenised on access: what the
    plain transformers baselines feed their Trainer."""
    import torch

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, index: int) -> dict:
            text, label = rows[index]
            return dict(tokenizer(text, truncation=True, max_length=max_length), labels=label)

    return Rows()


def start_ray(num_cpus: int) -> None:
    import ray

    from finetune_trainer.runner import local_ray_init_kwargs

    if ray.is_initialized():
        ray.shutdown()
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, log_to_driver=False,
             logging_level="WARNING", **local_ray_init_kwargs())


def minilm_job(name: str, output: str, *, training: dict[str, Any], workers: int, max_samples: Optional[int],
               validation: Optional[str] = None, test: Optional[str] = None, tune: Optional[dict] = None,
               max_seq_length: int = 64, train: Optional[str] = None):
    from finetune_trainer.config import JobConfig
    from finetune_trainer.modeling import minilm_path

    data: dict[str, Any] = {"train": train or str(sst2_file("train")), "textColumn": "sentence",
                            "labelColumn": "label", "maxSeqLength": max_seq_length}
    if max_samples is not None:
        data["maxSamples"] = max_samples
    if validation:
        data["validation"] = validation
    else:
        data["validationFraction"] = 0.02
    if test:
        data["test"] = test
    config: dict[str, Any] = {"model": {"source": str(minilm_path()), "labels": ["negative", "positive"]},
                              "data": data, "training": training, "output": {"uri": output, "keepCheckpoints": 1}}
    if tune:
        config["tune"] = tune
    return JobConfig.model_validate({"name": name, "config": config,
                                     "scaling": {"numWorkers": workers, "cpusPerWorker": 1}})


class LatestReport:
    """A `run_job` progress callback keeping the single trial's latest reported
    metrics (throughput, memory, the last evaluation)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, report, trials) -> None:
        if "run" in trials and trials["run"].latest:
            self.values = dict(trials["run"].latest)


RAY_WORKER_NICENESS = 15
"""Ray starts its workers at niceness 15 (the raylet stays responsive)."""


def _at_worker_niceness() -> None:
    os.nice(max(0, RAY_WORKER_NICENESS - os.nice(0)))


def run_like_a_ray_worker(function, *args):
    """`function(*args)` in a fresh (spawned) process at the niceness of a Ray worker,
    so a baseline and our Ray workers meet the machine's other load alike."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_at_worker_niceness) as pool:
        return pool.submit(function, *args).result()


def training_clock():
    """A Trainer callback timing the training loop alone (from `on_train_begin`, once
    the model, data loader and optimizer are set up, to `on_train_end`): what our
    loop's throughput counts too."""
    import time

    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        seconds = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.started

    return Clock()
