"""How a worker group shares the model: `resources.distributed` (`scaling.distributed`).

- `ddp` (`Replicated`): every worker holds the whole model; Ray Train's
  `prepare_model` wraps it in DistributedDataParallel, which averages gradients.
- `fsdp` (`FullySharded`): FSDP2 (`torch.distributed.fsdp.fully_shard`) shards
  parameters, gradients and optimizer state along dim 0 across the workers. Every
  `nn.ModuleList` entry (the transformer layers) is its own unit, the rest of the
  model the root's, so a layer's full weights exist only while it runs.

Both are asked the same things by the loop: wrap the model (before the optimizer is
built when sharding replaces the parameters), gather the model and optimizer states
for a checkpoint, load an optimizer state, keep evaluation forwards in step, and say
how much parameter memory this worker holds.

Checkpoints under FSDP are gathered, not sharded: every rank takes part in
`get_model_state_dict` / `get_optimizer_state_dict` with
`StateDictOptions(full_state_dict=True, cpu_offload=True)`, and rank 0 writes the
usual `model.pt` (the whole model, so export and PBT read it unchanged) and an
optimizer state keyed by parameter name. On resume each rank loads `model.pt` into
the unsharded model before sharding, and `set_optimizer_state_dict` takes the
named optimizer state and keeps this rank's shard. Gathering costs one full copy of
the model and optimizer state in rank 0's host memory at each checkpoint.

Each worker still loads the whole model on its host before sharding it; what
sharding saves is the accelerator memory of training (weights, gradients, Adam's
moments), which is where large models run out.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

log = logging.getLogger("finetune_trainer.train_loop")


class Replicated:
    """DDP through Ray Train: a whole model per worker."""

    name = "ddp"
    shards_in_place = False
    """Whether wrapping replaces the model's parameters (so the optimizer must be built
    after it)."""

    def __init__(self, *, rank: int, world_size: int, device: Any, find_unused_parameters: bool = False) -> None:
        self.rank, self.world_size, self.device = rank, world_size, device
        self.find_unused_parameters = find_unused_parameters

    def place(self, module: Any) -> None:
        """Put the unwrapped model where it trains before any checkpoint is loaded."""
        module.to(self.device)

    def wrap(self, module: Any) -> Any:
        import ray.train.torch

        kwargs = {"find_unused_parameters": self.find_unused_parameters} if self.world_size > 1 else None
        return ray.train.torch.prepare_model(module, parallel_strategy_kwargs=kwargs)

    def full_states(self, model: Any, core: Any, optimizer: Any) -> tuple[Optional[dict], Optional[dict]]:
        """(model state, optimizer state) for a checkpoint on rank 0, (None, None) on
        the others. Every rank calls it."""
        from finetune_trainer.modeling import unwrap

        if self.rank != 0:
            return None, None
        return unwrap(model).state_dict(), optimizer.state_dict()

    def load_optimizer_state(self, core: Any, optimizer: Any, state: dict[str, Any]) -> None:
        optimizer.load_state_dict(state)

    def evaluation_end(self, module: Any, batches: int, reducer: Any,
                       forward: Callable[[], None]) -> Callable[[], None]:
        """What a rank runs after scoring its `batches` validation batches of `module`,
        before the counts are summed, so every rank's collectives stay in step
        (nothing here: DDP's forward has none)."""
        return lambda: None

    def parameter_bytes(self, core: Any) -> tuple[int, int]:
        """(bytes of parameters this worker holds, bytes of the whole model's)."""
        local = whole = 0
        for parameter in core.parameters():
            held = parameter.to_local() if hasattr(parameter, "to_local") else parameter
            local += held.numel() * held.element_size()
            whole += parameter.numel() * parameter.element_size()
        return local, whole


class FullySharded(Replicated):
    """FSDP2: parameters, gradients and optimizer state sharded across the workers.
    `param_dtype` (bf16 on a GPU) is the mixed-precision policy's compute dtype;
    gradients are reduced in fp32 and the sharded master weights stay fp32."""

    name = "fsdp"
    shards_in_place = True

    def __init__(self, *, rank: int, world_size: int, device: Any, param_dtype: Any = None) -> None:
        super().__init__(rank=rank, world_size=world_size, device=device)
        self.param_dtype = param_dtype

    def place(self, module: Any) -> None:
        """Nothing: `fully_shard` moves each unit's shard to the device as it shards
        it, so the whole model never sits on an accelerator."""

    def _options(self) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=True)

    def wrap(self, module: Any) -> Any:
        """Shard `module` in place (it becomes an FSDPModule) and return it. Then rank
        0's weights are broadcast into every rank's shards, as DDP broadcasts at wrap,
        so all shards come from one model."""
        import torch
        from torch import nn
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        if getattr(module, "_finetune_sharded", False):
            return module
        # References, not copies: sharding gives the module new parameters and these keep
        # the old storage alive only until the broadcast.
        rank0_state = module.state_dict() if self.rank == 0 else {}
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        kwargs: dict[str, Any] = {"mesh": mesh}
        if self.param_dtype is not None:
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=self.param_dtype, reduce_dtype=torch.float32)
        units = [block for _, child in module.named_modules() if isinstance(child, nn.ModuleList)
                 for block in child if any(True for _ in block.parameters())]
        for block in units:
            fully_shard(block, **kwargs)
        fully_shard(module, **kwargs)
        set_model_state_dict(module, rank0_state,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        module._finetune_sharded = True
        if self.rank == 0:
            local, whole = self.parameter_bytes(module)
            log.info("fsdp: %d units over %d workers; this worker holds %.1f of %.1f MB of parameters",
                     len(units) + 1, self.world_size, local / 1e6, whole / 1e6)
        return module

    def full_states(self, model: Any, core: Any, optimizer: Any) -> tuple[Optional[dict], Optional[dict]]:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        model_state = get_model_state_dict(core, options=self._options())
        optimizer_state = get_optimizer_state_dict(core, optimizer, options=self._options())
        if self.rank != 0:
            return None, None
        return model_state, optimizer_state

    def load_optimizer_state(self, core: Any, optimizer: Any, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        # Only the group settings a fresh optimizer has: torch maps the saved state onto
        # the new optimizer's keys, and the schedule's `initial_lr` is not one of them
        # (restore_optimizer sets the groups from the spec afterwards anyway).
        known = {key for group in optimizer.param_groups for key in group}
        state = {**state, "param_groups": [{k: v for k, v in group.items() if k in known}
                                           for group in state["param_groups"]]}
        set_optimizer_state_dict(core, optimizer, state, options=StateDictOptions(full_state_dict=True))

    def evaluation_end(self, module: Any, batches: int, reducer: Any,
                       forward: Callable[[], None]) -> Callable[[], None]:
        """Every forward of a sharded model all-gathers each unit's weights, a
        collective: a rank with fewer validation batches than another runs as many
        throw-away forwards as it lacks. Then the root unit is resharded: FSDP keeps
        the root's weights gathered after a forward for the backward that follows,
        and an evaluation has none."""
        missing = reducer.max_int(batches) - batches

        def end() -> None:
            for _ in range(missing):
                forward()
            module.reshard()

        return end


def parallel_for(distributed: str, *, rank: int, world_size: int, device: Any, autocast_dtype: Any,
                 find_unused_parameters: bool) -> tuple[Replicated, Any]:
    """(the wrapping for `distributed`, the autocast dtype the loop keeps). Under FSDP a
    mixed-precision dtype becomes the sharding's compute dtype instead of autocast."""
    if distributed == "fsdp":
        return FullySharded(rank=rank, world_size=world_size, device=device, param_dtype=autocast_dtype), None
    return Replicated(rank=rank, world_size=world_size, device=device,
                      find_unused_parameters=find_unused_parameters), autocast_dtype


def peak_memory_bytes(device: Any) -> int:
    """This worker's peak memory so far: allocated accelerator memory on a GPU, else the
    process's peak resident set (which includes Python and the libraries)."""
    import resource

    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def throwaway_forward(model: Any, batch: dict[str, Any]) -> Callable[[], None]:
    """A forward of `model` on `batch` whose result is dropped (no gradients, eval mode)."""
    import torch

    def forward() -> None:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(**batch)
        finally:
            model.train(was_training)

    return forward


__all__ = ["FullySharded", "Replicated", "parallel_for", "peak_memory_bytes", "throwaway_forward"]
