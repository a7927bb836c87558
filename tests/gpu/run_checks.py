"""The GPU checks: one script, a few minutes on one CUDA GPU, one line per check.

    python tests/gpu/run_checks.py        # exit 0 when every check passes

It runs the real per-worker training loop in this process (the loop harness of the
unit tests plays Ray Train's storage), so peak memory is measured where the model
lives. Checks:

- `device`: the loop trains on the GPU (not silently on the CPU);
- `bf16 resume` and `fp16 resume`: training under autocast converges to finite losses,
  and a run restarted from its step-3 checkpoint continues from step 3 (not step 0),
  ends at the same step and with weights close to the uninterrupted run's;
- `fp16 checkpoint`: a checkpoint saved in fp16, trained with `precision: fp16`, loads
  as fp32 master weights and the gradient scaler runs (transformers 5 would otherwise
  keep fp16 weights, and the scaler refuses fp16 gradients);
- `peak memory`: a 6-layer model's peak allocated memory in fp32 and bf16, printed
  beside each other (bf16 autocast must not use more).

Nothing here runs on a machine without CUDA: it prints one `SKIP` line and exits 0.
`tests/gpu/test_gpu_checks.py` runs it under the `gpu` pytest marker.
"""

from __future__ import annotations

import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "trainer" / "unit"))  # the loop harness and tiny-model helpers


def _data(folder: Path) -> tuple[Path, Path]:
    from finetune_trainer.demo import write_splits

    paths = write_splits(folder, 500, seed=7)
    return paths["train"], paths["validation"]


def _model(folder: Path, layers: int = 2, hidden: int = 32, dtype: Any = None) -> Path:
    import torch
    from core_helpers import VOCAB, make_tokenizer
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=max(2, hidden // 64), intermediate_size=hidden * 4,
                        max_position_embeddings=128, num_labels=5)
    model = BertForSequenceClassification(config)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder)
    make_tokenizer(folder)
    return folder


def _job(tmp: Path, model: Path, precision: str, **training: Any):
    from loop_harness import loop_job

    train, validation = _data(tmp / "data")
    return loop_job(tmp, model, train, validation,
                    training={"precision": precision, "epochs": 1, "batchSize": 16, **training})


def check_device(tmp: Path) -> str:
    import torch
    from loop_harness import run_loop

    torch.cuda.reset_peak_memory_stats()
    run_loop(_job(tmp, _model(tmp / "model"), "fp32"), tmp / "keep")
    used = torch.cuda.max_memory_allocated()
    assert used > 0, "the loop allocated no GPU memory: it trained on the CPU"
    return f"trained on {torch.cuda.get_device_name(0)}, {used / 2**20:.1f} MiB peak"


def check_resume(tmp: Path, precision: str) -> str:
    import math

    import torch
    from loop_harness import run_loop

    job = _job(tmp, _model(tmp / "model"), precision)
    whole = run_loop(job, tmp / "whole")
    losses = [r["loss"] for r in whole.reports if "loss" in r]
    assert losses and all(math.isfinite(x) for x in losses), f"non-finite losses: {losses}"
    assert 3 in whole.checkpoints, f"no step-3 checkpoint (have {sorted(whole.checkpoints)})"
    resumed = run_loop(job, tmp / "resumed", start=whole.checkpoints[3])
    steps = [int(r["step"]) for r in resumed.reports]
    assert min(steps) > 3, f"the resumed run reported steps {steps}: it did not start from step 3"
    assert max(steps) == max(int(r["step"]) for r in whole.reports)
    a, b = whole.final_weights(), resumed.final_weights()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())
    assert worst < 5e-2, f"resumed weights differ from the uninterrupted run's by up to {worst:.3g}"
    return f"resumed at step 3, ran steps {steps[0]}..{steps[-1]}, max weight difference {worst:.2e}"


def check_fp16_checkpoint(tmp: Path) -> str:
    import torch
    from loop_harness import run_loop

    model = _model(tmp / "model", dtype=torch.float16)
    harness = run_loop(_job(tmp, model, "fp16"), tmp / "keep")
    dtypes = {str(t.dtype) for t in harness.final_weights().values() if t.is_floating_point()}
    assert dtypes == {"torch.float32"}, f"trained weights are {dtypes}, not fp32 master weights"
    return f"an fp16 checkpoint trained with the fp16 scaler; weights kept in {dtypes.pop()}"


def check_peak_memory(tmp: Path) -> str:
    import torch
    from loop_harness import run_loop

    model = _model(tmp / "model", layers=6, hidden=384)
    peaks = {}
    for precision in ("fp32", "bf16"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        run_loop(_job(tmp / precision, model, precision, batchSize=32), tmp / precision / "keep")
        peaks[precision] = torch.cuda.max_memory_allocated() / 2**20
    assert peaks["bf16"] <= peaks["fp32"] * 1.05, f"bf16 used more memory than fp32: {peaks}"
    return f"6-layer, hidden 384, batch 32: fp32 {peaks['fp32']:.0f} MiB (baseline), bf16 {peaks['bf16']:.0f} MiB"


CHECKS: list[tuple[str, Callable[[Path], str]]] = [
    ("device", check_device),
    ("bf16 resume", lambda tmp: check_resume(tmp, "bf16")),
    ("fp16 resume", lambda tmp: check_resume(tmp, "fp16")),
    ("fp16 checkpoint", check_fp16_checkpoint),
    ("peak memory", check_peak_memory),
]


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("SKIP gpu checks: no CUDA device on this machine")
        return 0
    failed = 0
    for name, check in CHECKS:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="finetune-gpu-") as tmp:
            try:
                detail = check(Path(tmp))
                print(f"PASS {name}: {detail} ({time.monotonic() - started:.0f} s)", flush=True)
            except Exception as err:  # one line per check; the trace goes to stderr
                failed += 1
                print(f"FAIL {name}: {err} ({time.monotonic() - started:.0f} s)", flush=True)
                traceback.print_exc(file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
