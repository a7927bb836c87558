"""Ray's accelerator type names, for `resources.rayAcceleratorType`.

Two different names describe a GPU model, and they must not be mixed up:

- the node label value a Kubernetes cluster uses (`resources.acceleratorType`, for
  example `nvidia-tesla-a100` under GKE's `cloud.google.com/gke-accelerator`), which
  only places pods on nodes;
- the name Ray gives the accelerator it detects on a node (`A100`, `H100`, `L4`, ...),
  which `ScalingConfig(accelerator_type=...)` asks for. A name Ray never detects is a
  resource that never exists: the workers' placement group never forms.

The operator does not import Ray, so the names are listed here; a test checks the list
against `ray.util.accelerators` of the installed Ray.
"""

from __future__ import annotations

# The values of the constants in ray.util.accelerators (Ray 2.60), sorted.
RAY_ACCELERATOR_TYPES: tuple[str, ...] = (
    "A100", "A100-40G", "A100-80G", "A10G",
    "AMD-Instinct-MI100", "AMD-Instinct-MI210", "AMD-Instinct-MI250X-MI250", "AMD-Instinct-MI300A",
    "AMD-Radeon-HD-7900", "AMD-Radeon-R9-200-HD-7900",
    "Apple-Silicon", "Ascend910B", "Ascend910B4",
    "B200", "B300", "FURIOSA_RNGD", "GB200", "GB300", "H100", "H20", "H200",
    "Intel-GAUDI", "Intel-GPU-Max-1100", "Intel-GPU-Max-1550",
    "K80", "L4", "L40S",
    "M1", "M1-Max", "M1-Pro", "M1-Ultra", "M2", "M2-Max", "M2-Pro", "M2-Ultra", "M3", "M3-Max", "M3-Pro",
    "MOBILINT_ARIES", "MOBILINT_REGULUS", "MXC500", "MXC550",
    "P100", "P4", "RTX-PRO-6000", "T4",
    "TPU-V2", "TPU-V3", "TPU-V4", "TPU-V5LITEPOD", "TPU-V5P", "TPU-V6E", "TPU-V7X",
    "V100", "aws-neuron-core",
)


def unknown_ray_type_message(value: str) -> str:
    """The error for a Ray accelerator type Ray does not know, with a hint when the
    value looks like a node label value instead."""
    hint = ""
    if value.lower().startswith(("nvidia-", "amd-", "tpu-")) and value not in RAY_ACCELERATOR_TYPES:
        hint = (" (that looks like a node label value: put it in resources.acceleratorType, "
                "which selects nodes, and Ray's name for the GPU here)")
    return (f"rayAcceleratorType {value!r} is not an accelerator type Ray knows{hint}; "
            f"allowed: {', '.join(RAY_ACCELERATOR_TYPES)}")
