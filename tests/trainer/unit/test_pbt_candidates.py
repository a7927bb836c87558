"""Under PBT the sweep picks its best checkpoint from the stored checkpoints themselves:
whole ones only, scored by their own state.json, later ones winning ties."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from finetune_trainer.checkpointing import MODEL_STATE, STATE_JSON, write_checkpoint
from finetune_trainer.pbt import stored_candidates


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
    assert stored_candidates(str(tmp_path), None, "eval_loss") == []
    assert stored_candidates(str(tmp_path), None, "eval_accuracy") == []
    assert stored_candidates(str(tmp_path / "absent"), None, "eval_loss") == []
