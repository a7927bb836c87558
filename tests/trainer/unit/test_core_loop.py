"""The per-worker training loop run in-process (loop_harness): resume after gradual
unfreezing, the short accumulation window at an epoch's end, throughput totals across
a resume, random-number states, asynchronous checkpoint uploads and the loop's test
hooks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from core_helpers import make_tiny_model_dir, sentiment_rows, write_rows
from loop_harness import loop_job, run_loop

GRADUAL_BY_EPOCH = {"type": "gradualUnfreezing", "gradualUnfreezing": {"every": 1, "unit": "epoch"}}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A tiny model and 48 training rows: 6 batches of 8 per epoch."""
    return {"model": make_tiny_model_dir(tmp_path / "model", num_labels=2),
            "train": write_rows(tmp_path / "train.csv", sentiment_rows(48)),
            "validation": write_rows(tmp_path / "validation.csv", sentiment_rows(10))}


def _job(tmp_path, files, **kwargs):
    return loop_job(tmp_path, files["model"], files["train"], files["validation"], **kwargs)


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.allclose(a[name], b[name], rtol=0, atol=1e-6)]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_resume_from_an_epochs_last_batch_with_unfreezing_by_epoch_continues_exactly(tmp_path, files):
    # Checkpoints every 3 steps: step 6 is the last batch of epoch 1, before that
    # epoch's unfreezing; the resumed run must load the optimizer saved there.
    job = _job(tmp_path, files, strategy=GRADUAL_BY_EPOCH)
    whole = run_loop(job, tmp_path / "whole")
    assert sorted(whole.checkpoints) == [3, 6, 9, 12]
    resumed = run_loop(job, tmp_path / "resumed", start=whole.checkpoints[6])
    assert [r["step"] for r in resumed.reports] == [9, 12]
    assert resumed.reports[0]["resumed_from_step"] == 6
    # Same unfreezing, same optimizer state, same random numbers: the same model.
    _assert_same_weights(resumed.final_weights(), whole.final_weights())


def test_resume_in_the_middle_of_an_epoch_continues_exactly(tmp_path, files):
    # Step 3 is half-way through epoch 1: the resumed run builds one DataLoader more
    # than the uninterrupted one, which must not move the dropout masks that follow.
    job = _job(tmp_path, files)
    whole = run_loop(job, tmp_path / "whole")
    resumed = run_loop(job, tmp_path / "resumed", start=whole.checkpoints[3])
    assert [r["step"] for r in resumed.reports] == [6, 9, 12]
    _assert_same_weights(resumed.final_weights(), whole.final_weights())


def test_throughput_totals_continue_after_a_resume(tmp_path, files):
    job = _job(tmp_path, files)
    whole = run_loop(job, tmp_path / "whole")
    at_checkpoint = next(r for r in whole.reports if r["step"] == 6)
    resumed = run_loop(job, tmp_path / "resumed", start=whole.checkpoints[6])
    first = resumed.reports[0]
    # 3 more steps of 8 samples on top of the checkpoint's 48.
    assert at_checkpoint["train_samples"] == 48 and first["train_samples"] == 72
    assert first["train_runtime_seconds"] > at_checkpoint["train_runtime_seconds"]
    assert resumed.reports[-1]["train_samples"] == whole.reports[-1]["train_samples"] == 96
    assert first["samples_per_second"] > 0


def test_an_epochs_short_last_window_averages_over_its_own_batches(tmp_path, files):
    """Accumulation 4 over 6 batches: the second step's gradient is the mean over
    batches 5 and 6, i.e. what accumulation 2 gives from the same point."""
    plain_sgd = {"optimizer": {"name": "sgd", "momentum": 0.0}, "learningRate": 0.5, "maxGradNorm": None,
                 "dropout": 0.0, "epochs": 1, "scheduler": {"name": "constant", "warmupRatio": 0.0},
                 "checkpoint": {"every": 1, "unit": "step"}, "evaluation": {"every": 1, "unit": "step"}}
    by_four = run_loop(_job(tmp_path, files, training={**plain_sgd, "gradientAccumulationSteps": 4}),
                       tmp_path / "four")
    assert sorted(by_four.checkpoints) == [1, 2]
    # From the checkpoint after batches 1-4, batches 5 and 6 with accumulation 2.
    by_two = run_loop(_job(tmp_path, files, training={**plain_sgd, "gradientAccumulationSteps": 2}),
                      tmp_path / "two", start=by_four.checkpoints[1])
    assert {r["step"] for r in by_two.reports} == {2} and sorted(by_two.checkpoints) == [2]
    before = torch.load(by_four.checkpoints[1] / "model.pt", weights_only=True)
    moved = [n for n in before if not torch.equal(before[n], by_four.final_weights()[n])]
    assert moved, "the last window did not train"
    _assert_same_weights(by_four.final_weights(), by_two.final_weights())


def test_checkpoint_upload_does_not_hold_the_training_thread(tmp_path, files):
    """With every upload held back, training still runs to its end; once the uploads
    go through, every checkpoint lands, no local copy is left, and resume works."""
    gate = threading.Event()
    job = _job(tmp_path, files)
    harness = run_loop(job, tmp_path / "uploaded", upload_gate=gate)
    assert [r["step"] for r in harness.reports] == [3, 6, 9, 12] and not harness.checkpoints
    gate.set()
    harness.finish_uploads()
    assert sorted(harness.checkpoints) == [3, 6, 9, 12]
    assert not any(folder.exists() for folder in harness.local_folders)
    assert {p.name for p in harness.checkpoints[6].iterdir()} == {"model.pt", "trainer_state.pt", "state.json"}
    resumed = run_loop(job, tmp_path / "resumed", start=harness.checkpoints[6])
    assert [r["step"] for r in resumed.reports] == [9, 12]


class _RecordSteps:
    """A LoopHooks that records every call of its `after_step` seam."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []

    def after_step(self, step: int, *, rank: int, world_size: int) -> None:
        self.calls.append((step, rank, world_size))


def test_the_loop_calls_its_hooks_after_every_optimizer_step(tmp_path, files):
    """The test seam: `hooks` in the loop config is called after each optimizer step,
    numbered over the whole run, so a resumed run goes on from its checkpoint's step."""
    job = _job(tmp_path, files)
    whole_hooks, resumed_hooks = _RecordSteps(), _RecordSteps()
    whole = run_loop(job, tmp_path / "whole", hooks=whole_hooks)
    assert whole_hooks.calls == [(step, 0, 1) for step in range(1, 13)]
    run_loop(job, tmp_path / "resumed", start=whole.checkpoints[6], hooks=resumed_hooks)
    assert [step for step, _, _ in resumed_hooks.calls] == list(range(7, 13))


def _draws() -> list:
    import random

    import numpy as np

    return [random.random(), float(np.random.rand()), float(torch.rand(1))]


def test_rng_bundle_round_trip_restores_every_generator():
    from finetune_trainer.checkpointing import rng_state, set_rng_state

    torch.manual_seed(3)
    saved = rng_state()
    expected = _draws()
    _draws()
    set_rng_state(saved)
    assert _draws() == expected
    assert ("cuda" in saved) == torch.cuda.is_available()


@pytest.mark.gpu
def test_rng_bundle_includes_the_gpu_generator():
    from finetune_trainer.checkpointing import rng_state, set_rng_state

    saved = rng_state()
    assert "cuda" in saved
    expected = torch.rand(4, device="cuda")
    torch.rand(4, device="cuda")
    set_rng_state(saved)
    assert torch.equal(torch.rand(4, device="cuda"), expected)
