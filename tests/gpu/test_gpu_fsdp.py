"""FSDP on CUDA: NCCL and the bf16 MixedPrecisionPolicy (`pytest -m gpu`; skipped
where no CUDA device exists). The CPU versions of these checks run everywhere:
tests/trainer/unit/test_core_parallel.py (one process, gloo) and
tests/trainer/ray/test_ray_fsdp.py (two Ray workers, gloo)."""

from __future__ import annotations

import pytest

from tests.trainer.unit.test_core_parallel import process_group, sharded_round_trip


@pytest.mark.gpu
def test_fsdp_on_one_gpu_computes_in_bf16_and_keeps_fp32_master_weights() -> None:
    import math

    import torch

    torch.cuda.set_device(0)
    with process_group("nccl"):
        out = sharded_round_trip("cuda", param_dtype=torch.bfloat16)
    assert out["sharded"]
    assert out["logits_dtype"] == torch.bfloat16  # the policy's compute dtype
    # The gathered checkpoint holds the fp32 master weights, on the host.
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in out["model_state"].values())
    assert math.isfinite(out["loss"]) and out["norm"] > 0
    assert out["moments"]


@pytest.mark.gpu
def test_fsdp_on_two_gpu_workers_trains_like_ddp(tmp_path) -> None:
    """Two Ray Train workers, one GPU each, NCCL: the bf16 FSDP run's losses follow the
    bf16 DDP run's (bf16 rounding differs between autocast and the sharding's policy,
    hence the looser tolerance), and each worker holds about half the parameters."""
    import os

    import ray
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs (NCCL cannot put two ranks on one GPU)")
    from finetune_trainer.config import JobConfig
    from finetune_trainer.runner import local_ray_init_kwargs, run_job
    from tests.trainer.ray.conftest import intent_rows
    from tests.trainer.unit.core_helpers import make_tiny_model_dir, write_rows

    model = make_tiny_model_dir(tmp_path / "model", num_labels=3)
    data = {"train": str(write_rows(tmp_path / "train.csv", intent_rows(96))),
            "validation": str(write_rows(tmp_path / "validation.csv", intent_rows(30, offset=1000)))}
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, **local_ray_init_kwargs())
    curves, latest = {}, {}
    try:
        for distributed in ("ddp", "fsdp"):
            trials: dict = {}
            job = JobConfig.model_validate({
                "name": distributed, "scaling": {"numWorkers": 2, "cpusPerWorker": 1, "gpusPerWorker": 1,
                                                 "distributed": distributed},
                "config": {"model": {"source": str(model)}, "data": {**data, "maxSeqLength": 32},
                           "training": {"maxSteps": 6, "batchSize": 8, "precision": "bf16",
                                        "evaluation": {"every": 2, "unit": "step"},
                                        "checkpoint": {"every": 4, "unit": "step"}},
                           "output": {"uri": str(tmp_path / "out")}}})
            run_job(job, echo=False, progress_callback=lambda report, t: trials.update(t))
            curves[distributed] = [h["loss"] for h in trials["run"].history]
            latest[distributed] = trials["run"].latest
    finally:
        ray.shutdown()
    assert len(curves["fsdp"]) == len(curves["ddp"]) == 3
    assert curves["fsdp"] == pytest.approx(curves["ddp"], rel=2e-2)
    sharded = latest["fsdp"]
    assert sharded["worker_parameter_bytes"] == pytest.approx(sharded["model_parameter_bytes"] / 2, rel=0.05)
