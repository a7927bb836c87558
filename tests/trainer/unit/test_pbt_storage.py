"""PBT and storage: the sweep picks its best checkpoint from the stored checkpoints
themselves (whole ones only, scored by their own state.json, later ones winning ties),
and each start from a checkpoint trains in a Train run of its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from finetune_trainer.checkpointing import MODEL_STATE, STATE_JSON, write_checkpoint
from finetune_trainer.pbt import run_name, stored_candidates


def _store(root: Path, run: str, stamp: str, trial: str, eval_loss: float, hyperparameters: dict) -> Path:
    """A checkpoint as Train leaves it: written by write_checkpoint, then moved into
    trials/<run>/checkpoint_<time>."""
    local = write_checkpoint({"w": torch.arange(64, dtype=torch.float32)}, {"optimizer": {}},
                             {"trial": trial, "step": 3, "hyperparameters": hyperparameters,
                              "metrics": {"step": 3, "eval_loss": eval_loss}})
    target = root / run / f"checkpoint_{stamp}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(local, target)
    return target


def test_whole_checkpoints_are_candidates_with_their_own_scores_and_hyperparameters(tmp_path):
    a = _store(tmp_path, "t_00000", "2026-12-04_10-00-01.000001", "t_00000", 1.30, {"training.learningRate": 0.02})
    b = _store(tmp_path, "t_00000-1a2b3c4d", "2026-12-04_10-00-05.000001", "t_00000", 1.10,
               {"training.learningRate": 1e-7})
    c = _store(tmp_path, "t_00001", "2026-12-04_10-00-03.000001", "t_00001", 1.20, {"training.learningRate": 1e-7})
    found = stored_candidates(str(tmp_path), None, "eval_loss")
    assert [(value, path, hp, trial) for value, _, path, _, hp, trial in found] == [
        (1.30, str(a), {"training.learningRate": 0.02}, "t_00000"),
        (1.20, str(c), {"training.learningRate": 1e-7}, "t_00001"),
        (1.10, str(b), {"training.learningRate": 1e-7}, "t_00000"),
    ]
    orders = [order for _, order, *_ in found]
    assert orders == sorted(orders) and len(set(orders)) == 3  # in time order across runs


def test_a_checkpoint_cut_off_mid_upload_is_no_candidate(tmp_path):
    whole = _store(tmp_path, "t_00000", "2026-12-04_10-00-01.000001", "t_00000", 1.5, {})
    truncated = _store(tmp_path, "t_00000", "2026-12-04_10-00-02.000001", "t_00000", 0.5, {})
    weights = truncated / MODEL_STATE
    weights.write_bytes(weights.read_bytes()[:-10])
    no_meta = _store(tmp_path, "t_00001", "2026-12-04_10-00-03.000001", "t_00001", 0.4, {})
    (no_meta / STATE_JSON).write_text('{"trial": "t_0')  # state.json itself cut off
    (tmp_path / "t_00001" / "checkpoint_manager_snapshot.json").write_text(json.dumps({}))
    assert [path for _, _, path, *_ in stored_candidates(str(tmp_path), None, "eval_loss")] == [str(whole)]


def test_checkpoints_without_the_metric_and_a_missing_root_give_no_candidates(tmp_path):
    _store(tmp_path, "t_00000", "2026-12-04_10-00-01.000001", "t_00000", float("nan"), {})
    _store(tmp_path, "t_00001", "2026-12-04_10-00-02.000001", "t_00001", float("inf"), {})
    assert stored_candidates(str(tmp_path), None, "eval_loss") == []
    assert stored_candidates(str(tmp_path), None, "eval_accuracy") == []
    assert stored_candidates(str(tmp_path / "absent"), None, "eval_loss") == []


class _Start:
    """What Tune hands a restarted trial: a checkpoint with a path."""

    def __init__(self, path: str) -> None:
        self.path = path


def test_every_start_from_a_checkpoint_is_a_run_of_its_own(tmp_path):
    root = tmp_path / "trials"
    assert run_name("t_00000", None, str(root)) == "t_00000"  # a fresh start (and its retries)
    donor = _Start(str(tmp_path / "t_00001" / "checkpoint_000003"))
    first = run_name("t_00000", donor, str(root))
    assert first.startswith("t_00000-") and first == run_name("t_00000", donor, str(root))  # nothing ran yet
    (root / first).mkdir(parents=True)
    second = run_name("t_00000", donor, str(root))  # exploited again from the same checkpoint
    assert second == f"{first}-1"
    (root / second).mkdir()
    assert run_name("t_00000", donor, str(root)) == f"{first}-2"
    # Another donor checkpoint, or another trial, starts its own count.
    assert run_name("t_00000", _Start(str(tmp_path / "t_00001" / "checkpoint_000004")), str(root)).count("-") == 1
    assert run_name("t_00002", donor, str(root)).count("-") == 1
