"""The real per-worker training loop on an image classifier (loop_harness): a run
resumed from a mid-epoch checkpoint, with augmentation and gradual unfreezing, ends
with exactly the weights of the uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from loop_harness import run_loop


def _job(model, digits, out, strategy=None):
    from finetune_trainer.config import JobConfig

    config = {
        "model": {"source": str(model), "task": "image-classification"},
        "data": {"train": str(digits / "train"), "validation": str(digits / "validation")},
        "image": {"augmentation": {"randomResizedCrop": True, "horizontalFlip": True, "colorJitter": 0.2}},
        "training": {"epochs": 2, "batchSize": 8, "learningRate": 1e-3,
                     "checkpoint": {"every": 3, "unit": "step"}, "evaluation": {"every": 3, "unit": "step"}},
        "output": {"uri": str(out)},
    }
    if strategy:
        config["strategy"] = strategy
    return JobConfig.model_validate({"name": "image-loop", "config": config,
                                     "scaling": {"numWorkers": 1, "cpusPerWorker": 1}})


@pytest.mark.parametrize("strategy", [
    None,
    {"type": "gradualUnfreezing", "gradualUnfreezing": {"every": 1, "unit": "epoch"}},
    {"type": "lora", "lora": {"r": 4, "targetModules": ["q_proj", "v_proj"]}},
], ids=["full", "gradual-unfreezing", "lora"])
def test_an_image_run_resumed_mid_epoch_ends_with_the_same_weights(tmp_path, digits_dir, image_model_dir,
                                                                   strategy) -> None:
    job = _job(image_model_dir("vit"), digits_dir, tmp_path / "out", strategy)
    whole = run_loop(job, tmp_path / "whole")
    steps = sorted(whole.checkpoints)
    assert steps[-1] >= 12 and 3 in steps
    assert {"eval_loss", "eval_accuracy", "eval_f1"} <= set(whole.reports[-1])
    resumed = run_loop(job, tmp_path / "resumed", start=whole.checkpoints[3])
    assert resumed.reports[0]["resumed_from_step"] == 3
    a, b = resumed.final_weights(), whole.final_weights()
    assert a.keys() == b.keys()
    different = [n for n in a if not torch.allclose(a[n], b[n], rtol=0, atol=1e-6)]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
