"""The model-wrapping strategies of `resources.distributed` (finetune_trainer.loop.parallel)
in one process: FSDP2 sharding, its gathered checkpoint states and their way back,
the evaluation's padding forwards, and the spec's refusals. The 2-worker equivalence
with DDP runs under Ray in tests/trainer/ray/test_ray_fsdp.py; the same round trip
on a GPU with NCCL and bf16 in tests/gpu/test_gpu_fsdp.py."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from typing import Any, Iterator

import pytest


@contextmanager
def process_group(backend: str) -> Iterator[None]:
    """A one-rank torch.distributed group for this process (gloo on CPU, NCCL on GPU)."""
    import torch.distributed as dist

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def tiny_bert(seed: int = 0):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=24, max_position_embeddings=16, num_labels=3)
    return BertForSequenceClassification(config)


def sharded_round_trip(device_type: str, param_dtype: Any = None) -> dict[str, Any]:
    """Shard a tiny BERT, train one step, gather its states, and load them into a second
    sharded copy; returns what the callers assert on. Needs a process group."""
    import torch
    from torch.distributed.tensor import DTensor

    from finetune_trainer.config import TrainingSpec
    from finetune_trainer.loop.parallel import FullySharded
    from finetune_trainer.optim import build_optimizer, build_scheduler, clip_gradients

    device = torch.device(device_type)
    strategy = FullySharded(rank=0, world_size=1, device=device, param_dtype=param_dtype)
    reference = tiny_bert().state_dict()
    model = strategy.wrap(tiny_bert())
    training = TrainingSpec(learningRate=1e-2)
    optimizer = build_optimizer(model, training)
    build_scheduler(optimizer, training, total_steps=10)  # as the loop does: it adds initial_lr to the groups
    batch = {"input_ids": torch.randint(0, 40, (4, 8), device=device), "labels": torch.tensor([0, 1, 2, 0],
                                                                                               device=device)}
    outputs = model(**batch)
    outputs.loss.backward()
    norm = clip_gradients([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    model_state, optimizer_state = strategy.full_states(model, model, optimizer)

    copy = strategy.wrap(tiny_bert(seed=1))
    copy_optimizer = build_optimizer(copy, training)
    strategy.load_optimizer_state(copy, copy_optimizer, optimizer_state)
    moments = {name: copy_optimizer.state[p]["exp_avg"].full_tensor() for name, p in copy.named_parameters()
               if p in copy_optimizer.state}
    return {"sharded": all(isinstance(p, DTensor) for p in model.parameters()), "reference": reference,
            "model_state": model_state, "optimizer_state": optimizer_state, "moments": moments,
            "logits_dtype": outputs.logits.dtype, "loss": float(outputs.loss.detach()), "norm": norm,
            "weights": {name: p.full_tensor().detach().cpu() for name, p in model.named_parameters()},
            "bytes": strategy.parameter_bytes(model)}


def test_fsdp_shards_and_gathers_whole_states_that_load_back() -> None:
    import math

    import torch

    with process_group("gloo"):
        out = sharded_round_trip("cpu")
    assert out["sharded"]
    # The gathered model state is a plain, whole state dict (what model.pt holds), on the host.
    assert set(out["model_state"]) == set(out["reference"])
    for name, weight in out["weights"].items():
        assert out["model_state"][name].device.type == "cpu"
        assert torch.equal(out["model_state"][name], weight), name
    # The optimizer state is keyed by parameter name and loads into another sharded copy.
    assert "bert.encoder.layer.0.attention.self.query.weight" in out["optimizer_state"]["state"]
    saved = out["optimizer_state"]["state"]
    assert out["moments"] and all(torch.equal(m, saved[name]["exp_avg"]) for name, m in out["moments"].items())
    assert math.isfinite(out["loss"]) and out["norm"] > 0
    local, whole = out["bytes"]
    assert local == whole > 0  # one rank holds every shard


def test_fsdp_evaluation_pads_to_the_longest_rank_then_reshards() -> None:
    from finetune_trainer.loop.parallel import FullySharded, Replicated

    class Reducer:
        def max_int(self, value: int) -> int:
            return 5  # another rank has 5 validation batches

    class Module:
        resharded = 0

        def reshard(self) -> None:
            self.resharded += 1

    calls: list[int] = []
    module = Module()
    end = FullySharded(rank=1, world_size=2, device=None).evaluation_end(module, 3, Reducer(),
                                                                        lambda: calls.append(1))
    end()
    assert len(calls) == 2 and module.resharded == 1
    Replicated(rank=1, world_size=2, device=None).evaluation_end(module, 3, Reducer(), lambda: calls.append(1))()
    assert len(calls) == 2


def _job(distributed: str, workers: int, **config: Any) -> dict[str, Any]:
    return {"name": "j", "scaling": {"numWorkers": workers, "distributed": distributed},
            "config": {"model": {"source": "m"}, "data": {"train": "t"}, "output": {"uri": "o"}, **config}}


@pytest.mark.parametrize(("job", "words"), [
    (_job("fsdp", 1), "scaling.distributed fsdp shards the model across workers and needs at least 2 workers "
                      "(scaling.numWorkers gives 1)"),
    (_job("fsdp", 2, strategy={"type": "gradualUnfreezing"}),
     "scaling.distributed fsdp cannot run strategy.type gradualUnfreezing"),
    (_job("fsdp", 2, training={"precision": "fp16"}), "scaling.distributed fsdp cannot run training.precision fp16"),
    (_job("sharded", 2), "scaling.distributed"),
    (_job("fsdp", 2, tune={"searchSpace": {"strategy.type": {"type": "choice",
                                                              "values": ["full", "gradualUnfreezing"]}}}),
     "cannot run strategy.type gradualUnfreezing: the sharded model cannot be re-wrapped when layers unfreeze mid-run; "
     "use strategy.type full, partial, featureExtraction or lora, or scaling.distributed ddp (a value "
     "tune.searchSpace can choose)"),
])
def test_job_config_refuses_what_fsdp_cannot_run(job: dict[str, Any], words: str) -> None:
    from pydantic import ValidationError

    from finetune_trainer.config import JobConfig

    with pytest.raises(ValidationError, match="distributed") as caught:
        JobConfig.model_validate(job)
    assert words in str(caught.value)


def test_fsdp_runs_lora_and_ddp_runs_one_worker() -> None:
    from finetune_trainer.config import JobConfig

    assert JobConfig.model_validate(_job("fsdp", 2, strategy={"type": "lora"})).scaling.distributed == "fsdp"
    assert JobConfig.model_validate(_job("ddp", 1)).scaling.distributed == "ddp"
    assert JobConfig.model_validate({k: v for k, v in _job("ddp", 1).items() if k != "scaling"}).scaling.distributed \
        == "ddp"
