"""Image classification: scikit-learn's 8x8 `digits` (1,797 images, 10 classes, shipped
with scikit-learn, nothing downloaded) written as an image folder by the project's
own writer (`demo_images.write_digits`: a seeded 70/15/15 split per class), and the
project's tiny random ViT (`demo_images.tiny_model`: 3 layers, 16x16 inputs, saved
with seed 0 and its image processor). Two arms on the same model files, the same
split and the same budget, one after the other in this run:

- ours: our trainer (`run_job`, embedded Ray, 1 worker, 1 thread), `strategy: full`,
  no augmentation;
- the baseline: a plain transformers `Trainer` (1 process, 1 thread), the images read
  here with PIL, converted to RGB and prepared by the model's own image processor,
  with the same epochs, batch, learning rate, linear schedule and warmup, weight decay,
  gradient clipping and seed. Both start from the same saved weights (the head too:
  it already has the 10 outputs).

Figures, each beside the baseline of this run: test accuracy on the held-out test
folder (target: ours >= the baseline - 0.5 points) and training images/s (ours: the
loop's own count over its training time; the baseline: training images x epochs over
the Trainer's loop, timed alike from after set-up to the last step; target: ours >=
0.95 x the baseline).

Both arms run once per seed of `BENCH_IMAGE_SEEDS` (default 42,43: data order; the
weights are the same saved ones), interleaved; accuracy is the mean over the seeds,
throughput each arm's best run (the machine is shared: the least disturbed one). Both
run at a Ray worker's niceness (the baseline in a process of its own) and on one
thread: on this loaded 2-core machine two threads per process made small steps many
times slower (OpenMP threads waiting on each other), in whichever arm had them.
`BENCH_IMAGE_EPOCHS` (default 8) sets the epochs; a smoke run: 1 epoch, one seed.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

EPOCHS = float(os.environ.get("BENCH_IMAGE_EPOCHS", "8"))
SEEDS = [int(s) for s in os.environ.get("BENCH_IMAGE_SEEDS", "42,43").split(",") if s.strip()]
BATCH = 32
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 0.01
WARMUP_RATIO = 0.05
THREADS = 1


def write_inputs(root: Path) -> dict[str, Path]:
    """The digits folders and the tiny ViT, as `python -m finetune_trainer.demo_images`
    writes them."""
    from finetune_trainer.demo_images import tiny_model, write_digits

    write_digits(root / "digits", seed=0)
    model = tiny_model(root / "vit", "vit", seed=0)
    paths = {split: root / "digits" / split for split in ("train", "validation", "test")}
    return {**paths, "model": model}


def folder_images(folder: Path) -> list[tuple[Path, int]]:
    """(image file, label index) of an image folder; labels are the sorted folder names."""
    labels = sorted(p.name for p in folder.iterdir() if p.is_dir())
    return [(image, index) for index, label in enumerate(labels) for image in sorted((folder / label).iterdir())]


def image_dataset(folder: Path, processor):
    """A map-style dataset of the folder's images for the Trainer, prepared on access."""
    import torch
    from PIL import Image

    files = folder_images(folder)

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(files)

        def __getitem__(self, index: int) -> dict[str, Any]:
            path, label = files[index]
            with Image.open(path) as image:
                pixels = processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]
            return {"pixel_values": pixels, "labels": label}

    return Images()


def baseline_hf_trainer(paths: dict[str, Path], seed: int) -> dict[str, float]:
    import numpy as np
    import torch
    from transformers import (AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments,
                              set_seed)

    from bench._trainer_common import training_clock

    torch.set_num_threads(THREADS)
    set_seed(seed)
    processor = AutoImageProcessor.from_pretrained(paths["model"])
    model = AutoModelForImageClassification.from_pretrained(paths["model"])
    train, test = image_dataset(paths["train"], processor), image_dataset(paths["test"], processor)
    with tempfile.TemporaryDirectory(prefix="bench-image-hf-") as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=BATCH, num_train_epochs=EPOCHS,
                                 learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY,
                                 lr_scheduler_type="linear", warmup_steps=WARMUP_RATIO, max_grad_norm=1.0,
                                 save_strategy="no", eval_strategy="no", report_to=[], seed=seed, use_cpu=True,
                                 logging_strategy="no", disable_tqdm=True, per_device_eval_batch_size=64,
                                 remove_unused_columns=False)
        clock = training_clock()
        trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[clock])
        output = trainer.train()
        predictions = trainer.predict(test)
    accuracy = float((np.argmax(predictions.predictions, -1) == predictions.label_ids).mean())
    return {"test_accuracy": accuracy, "images_per_second": len(train) * EPOCHS / clock.seconds,
            "steps": output.global_step}


def ours(paths: dict[str, Path], seed: int, out: str) -> dict[str, float]:
    from bench._trainer_common import LatestReport
    from finetune_trainer.config import JobConfig
    from finetune_trainer.runner import run_job

    never = {"every": 1_000_000, "unit": "step"}  # one report, at the end: the whole run's throughput
    config = {"model": {"source": str(paths["model"]), "task": "image-classification"},
              "data": {"train": str(paths["train"]), "validation": str(paths["validation"]),
                       "test": str(paths["test"]), "format": "imagefolder"},
              "strategy": {"type": "full"},
              "training": {"epochs": EPOCHS, "batchSize": BATCH, "learningRate": LEARNING_RATE,
                           "weightDecay": WEIGHT_DECAY,
                           "scheduler": {"name": "linear", "warmupRatio": WARMUP_RATIO},
                           "maxGradNorm": 1.0, "seed": seed, "evaluation": never, "checkpoint": never},
              "output": {"uri": out, "keepCheckpoints": 1}}
    job = JobConfig.model_validate({"name": "bench-digits", "config": config,
                                    "scaling": {"numWorkers": 1, "cpusPerWorker": THREADS}})
    latest = LatestReport()
    result = run_job(job, echo=False, progress_callback=latest)
    return {"test_accuracy": float(result.metrics["test_accuracy"]),
            "images_per_second": float(latest.values["samples_per_second"]), "steps": int(result.metrics["steps"])}


def _line(name: str, arm: dict[str, float], base: dict[str, float]) -> str:
    points = 100 * (arm["test_accuracy"] - base["test_accuracy"])
    speed = arm["images_per_second"] / base["images_per_second"]
    return (f"{name}: test accuracy {arm['test_accuracy']:.4f} ({points:+.2f} points vs baseline), "
            f"{arm['images_per_second']:.0f} images/s ({speed:.2f} x baseline), {arm['steps']} steps")


def main() -> None:
    import ray

    from bench._trainer_common import run_like_a_ray_worker, start_ray

    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="bench-image-") as scratch:
        paths = write_inputs(Path(scratch))
        print(f"tiny ViT (demo_images) on digits: {len(folder_images(paths['train']))} train / "
              f"{len(folder_images(paths['test']))} test images, {EPOCHS:g} epochs, batch {BATCH}, "
              f"lr {LEARNING_RATE}, {THREADS} thread at niceness 15 in both arms, seeds {SEEDS} interleaved "
              "(machine shared: timings are noisy)", flush=True)
        start_ray(num_cpus=THREADS + 1)  # first, so its idle processes run beside both arms
        try:
            for seed in SEEDS:
                base = run_like_a_ray_worker(baseline_hf_trainer, paths, seed)
                runs["baseline"].append(base)
                print(f"[seed {seed}] baseline: transformers Trainer: test accuracy "
                      f"{base['test_accuracy']:.4f}, {base['images_per_second']:.0f} images/s, "
                      f"{base['steps']} steps", flush=True)
                mine = ours(paths, seed, str(Path(scratch) / "out" / str(seed)))
                runs["ours"].append(mine)
                print(f"[seed {seed}] " + _line("ours", mine, base), flush=True)
        finally:
            ray.shutdown()
    speed = {name: max(r["images_per_second"] for r in arm) for name, arm in runs.items()}
    accuracy = {name: statistics.mean(r["test_accuracy"] for r in arm) for name, arm in runs.items()}
    print(f"mean test accuracy over {len(SEEDS)} seeds: baseline {accuracy['baseline']:.4f}, ours "
          f"{accuracy['ours']:.4f}; best images/s: baseline {speed['baseline']:.0f}, ours {speed['ours']:.0f}",
          flush=True)
    print(f"figure: test accuracy ours - baseline = {100 * (accuracy['ours'] - accuracy['baseline']):+.2f} points "
          f"(target >= -0.5); images/s ours / baseline = {speed['ours'] / speed['baseline']:.2f} (target >= 0.95)",
          flush=True)

if __name__ == "__main__":
    main()
