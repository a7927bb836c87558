"""`resources.distributed` reaches the trainer's scaling unchanged."""

from __future__ import annotations

from finetune_operator.api import ResourcesSpec


def test_resources_carry_distributed_to_the_trainer() -> None:
    scaling = ResourcesSpec.model_validate({"workers": 2, "worker": {"gpu": 2}, "distributed": "fsdp"}).scaling()
    assert (scaling.num_workers, scaling.distributed) == (4, "fsdp")
    assert ResourcesSpec().scaling().distributed == "ddp"
