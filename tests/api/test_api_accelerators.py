"""`resources.acceleratorType` (a node label value) and `resources.rayAcceleratorType`
(Ray's name) are kept apart, and Ray's names are checked against Ray's own list."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from finetune_operator.accelerators import RAY_ACCELERATOR_TYPES
from finetune_operator.api import ResourcesSpec
from finetune_operator.crd import build_crd


def test_the_list_matches_the_installed_rays_constants() -> None:
    accelerators = pytest.importorskip("ray.util.accelerators.accelerators")
    ray_names = {value for name, value in vars(accelerators).items() if name.isupper() and isinstance(value, str)}
    assert set(RAY_ACCELERATOR_TYPES) == ray_names
    assert len(RAY_ACCELERATOR_TYPES) == len(set(RAY_ACCELERATOR_TYPES))


def test_the_crd_lists_the_allowed_names() -> None:
    resources = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["resources"]["properties"]
    assert resources["rayAcceleratorType"]["enum"] == list(RAY_ACCELERATOR_TYPES)
    assert "enum" not in resources["acceleratorType"]  # any node label value


def test_node_label_and_ray_type_go_their_own_ways() -> None:
    resources = ResourcesSpec.model_validate({"acceleratorType": "nvidia-tesla-a100", "rayAcceleratorType": "A100",
                                              "worker": {"gpu": 1}})
    assert resources.scaling().accelerator_type == "A100"
    # The node label alone pins the hardware; Ray is not asked for a type it may not know.
    resources = ResourcesSpec.model_validate({"acceleratorType": "nvidia-tesla-a100", "worker": {"gpu": 1}})
    assert resources.scaling().accelerator_type is None


@pytest.mark.parametrize("value", ["nvidia-tesla-a100", "a100", "A100 "])
def test_an_unknown_ray_type_names_the_field_and_the_allowed_values(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ResourcesSpec.model_validate({"rayAcceleratorType": value, "worker": {"gpu": 1}})
    [error] = caught.value.errors()
    assert error["loc"] == ("rayAcceleratorType",)
    assert "allowed: A100" in error["msg"] and "H100" in error["msg"]
