"""Sums, minimums, maximums and gathers across the ranks of a worker group (torch.distributed,
set up by Ray Train); each is a no-op for one worker."""

from __future__ import annotations

from typing import Any


class Reducer:
    """Sums tensors across ranks (no-op for one worker)."""

    def __init__(self, world_size: int, device: Any) -> None:
        self.world_size = world_size
        self.device = device

    def __call__(self, tensor):
        import torch.distributed as dist

        if self.world_size > 1:
            original = tensor.device
            tensor = tensor.to(self.device)
            dist.all_reduce(tensor)
            tensor = tensor.to(original)
        return tensor

    def min_int(self, value: int) -> int:
        import torch
        import torch.distributed as dist

        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return int(tensor.item())

    def max_int(self, value: int) -> int:
        import torch
        import torch.distributed as dist

        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def max_floats(self, *values: float) -> list[float]:
        import torch
        import torch.distributed as dist

        if self.world_size == 1:
            return [float(v) for v in values]
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [float(v) for v in tensor.cpu()]

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's `value` (any picklable object), in rank order."""
        import torch.distributed as dist

        if self.world_size == 1:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def sum_floats(self, *values: float) -> list[float]:
        import torch

        tensor = torch.tensor(values, dtype=torch.float64)
        return [float(v) for v in self(tensor)]


__all__ = ["Reducer"]
