"""Where tests find the project and the workplace's shared inputs.

`shared/` (KubeRay's CRDs, the SST-2 data) sits beside the repository's root, both on a
developer's machine and in CI; FINETUNE_SHARED_DIR overrides that. Nothing from it is
copied into the project.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FINETUNE_SHARED_DIR", REPO.parent / "shared")).resolve()
KUBERAY_CRDS = SHARED / "kuberay-crds"
RAYJOB_CRD = KUBERAY_CRDS / "ray.io_rayjobs.yaml"
RAYCLUSTER_CRD = KUBERAY_CRDS / "ray.io_rayclusters.yaml"
SST2 = SHARED / "data" / "sst2"
FINETUNE_CRD = REPO / "deploy" / "crds" / "finetune.dev_finetunejobs.yaml"
