"""What a training checkpoint holds, and how it is written and read back.

A checkpoint is a folder of three files: the model's weights (`model.pt`), the
trainer's state (`trainer_state.pt`: optimizer, schedule, gradient scaler and every
rank's random-number states) and `state.json` (position, unfreezing stage, early
stopping, throughput totals, loss history, label names, the data report of all ranks
and under PBT the trial whose weights these continue). That is all a resumed run
needs, and nothing is kept twice. Finishing needs only `model.pt` and `state.json`:
the data report is there so that it need not read the training data again.

Rank 0 writes the folder and hands it to Ray Train with an asynchronous upload, so
the other ranks are not held in their next collective while rank 0 uploads; Ray
deletes the local folder once it is uploaded.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

MODEL_STATE = "model.pt"
TRAINER_STATE = "trainer_state.pt"
STATE_JSON = "state.json"


def rng_state() -> dict[str, Any]:
    """This process's random-number states: Python, NumPy, torch's CPU generator and,
    where CUDA is available, the current GPU's generator (dropout on a GPU draws from
    it, so without it a resumed run would drop different units)."""
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states saved by `rng_state` (the GPU's only when it was saved and a
    GPU is here)."""
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def write_checkpoint(model_state: dict[str, Any], trainer_state: dict[str, Any], meta: dict[str, Any]) -> str:
    """Write a checkpoint into a new local folder and return its path. The caller
    hands the folder to Ray, which removes it after the upload."""
    import torch

    directory = Path(tempfile.mkdtemp(prefix="finetune-ckpt-"))
    torch.save(model_state, directory / MODEL_STATE)
    torch.save(trainer_state, directory / TRAINER_STATE)
    # The sizes of the weight files, so that a reader of the stored copy can tell a
    # whole checkpoint from one whose upload was cut off (`is_whole`).
    sizes = {name: (directory / name).stat().st_size for name in (MODEL_STATE, TRAINER_STATE)}
    (directory / STATE_JSON).write_text(json.dumps({**meta, "file_bytes": sizes}))
    return str(directory)


def is_whole(sizes: dict[str, int], stored: dict[str, int]) -> bool:
    """Whether the stored files (name -> size) hold every weight file at the size
    its `state.json` recorded (`file_bytes`); a checkpoint written before sizes were
    recorded counts as whole when its files are there."""
    if not sizes:
        return all(name in stored for name in (MODEL_STATE, TRAINER_STATE))
    return all(stored.get(name) == size for name, size in sizes.items())


def lineage(directory: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Where a checkpoint's weights came from: its trial, its step and a SHA-256 of
    its weights file (so a later check can tell the weights were copied unchanged)."""
    import hashlib

    digest = hashlib.sha256()
    with open(Path(directory) / MODEL_STATE, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"trial": meta.get("trial"), "step": meta.get("step"), "weights_sha256": digest.hexdigest()}


def read_checkpoint(directory: str | Path, device: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(model state on `device`, trainer state on the CPU, meta) of a checkpoint folder."""
    import torch

    directory = Path(directory)
    meta = json.loads((directory / STATE_JSON).read_text())
    model_state = torch.load(directory / MODEL_STATE, map_location=device, weights_only=True)
    trainer_state = torch.load(directory / TRAINER_STATE, map_location="cpu", weights_only=False)
    return model_state, trainer_state, meta


__all__ = ["MODEL_STATE", "STATE_JSON", "TRAINER_STATE", "is_whole", "lineage", "read_checkpoint", "rng_state", "set_rng_state",
           "write_checkpoint"]
