"""The built RayJob of three canonical FineTuneJobs, compared whole with the expected
RayJob stored under tests/operator/golden/.

A golden file is what a reviewer reads to see what the operator creates; a change in
the builders shows up as a diff of it. When a change is meant, regenerate the files
and review the diff with the change:

    FINETUNE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/operator/unit/test_pure_golden.py

The builders run with the default Settings, whatever FINETUNE_* variables the shell
has, so the files do not depend on who runs the tests.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from finetune_operator import builders
from finetune_operator.settings import Settings
from tests.support.jobs import stored_job
from tests.support.rayjob_schema import assert_valid_rayjob

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("FINETUNE_UPDATE_GOLDEN") == "1"

GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

CANONICAL: dict[str, Callable[[], tuple[dict, Any]]] = {
    # One CPU worker, everything else defaulted.
    "cpu-single-worker": lambda: stored_job(
        "reviews", "team-a", resources={"workers": 1, "worker": {"cpu": "2", "memory": "4Gi"}}),
    # Four GPU pods, a Tune sweep over them, placed on L4 nodes.
    "gpu-multi-worker-tune": lambda: stored_job(
        "sweep", "team-a",
        model={"labels": ["negative", "positive"]},
        strategy={"type": "lora"},
        tune={"searchSpace": {"training.learningRate": {"type": "loguniform", "min": 1e-5, "max": 1e-3},
                              "strategy.lora.r": {"type": "choice", "values": [4, 8, 16]}},
              "numTrials": 8, "maxConcurrentTrials": 2,
              "scheduler": {"name": "asha", "gracePeriod": 1, "reductionFactor": 2},
              "metric": "eval_accuracy", "mode": "max"},
        resources={"workers": 4, "worker": {"gpu": 2, "cpu": "8", "memory": "32Gi"},
                   "acceleratorType": "nvidia-l4", "rayAcceleratorType": "L4",
                   "nodeSelector": {"pool": "gpu"}, "tolerations": [GPU_TAINT]}),
    # A tenant's namespace: queued by Kueue, at its priority, writing with its credentials.
    "tenant-kueue": lambda: stored_job(
        "nightly", "tenant-blue", uid="5e6f7a8b-uid", labels={"team": "blue"},
        output={"uri": "s3://blue-models/nightly", "endpoint": "http://minio.blue:9000",
                "secretRef": {"name": "blue-s3"}},
        scheduling={"queueName": "blue-queue", "priorityClassName": "batch-low"}),
}


@pytest.fixture
def default_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.upper().startswith("FINETUNE_"):
            monkeypatch.delenv(key)
    return Settings()


def _dump(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=100)


@pytest.mark.parametrize("case", sorted(CANONICAL))
def test_built_rayjob_equals_its_golden_file(case: str, default_settings: Settings) -> None:
    job_obj, spec = CANONICAL[case]()
    built = builders.build_rayjob(job_obj, spec, default_settings)
    path = GOLDEN / f"{case}.rayjob.yaml"
    if UPDATE:
        assert_valid_rayjob(built)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Expected RayJob of the {case!r} case of tests/operator/unit/test_pure_golden.py.\n"
                        "# Regenerate: FINETUNE_UPDATE_GOLDEN=1 pytest tests/operator/unit/test_pure_golden.py\n"
                        + _dump(built))
    assert path.exists(), f"{path} is missing; write it with FINETUNE_UPDATE_GOLDEN=1"
    expected = yaml.safe_load(path.read_text())
    if built != expected:
        diff = "".join(difflib.unified_diff(_dump(expected).splitlines(True), _dump(built).splitlines(True),
                                            fromfile=str(path), tofile="built"))
        pytest.fail(f"the built RayJob differs from {path.name} "
                    f"(if meant: FINETUNE_UPDATE_GOLDEN=1):\n{diff}")


def test_golden_files_are_valid_kuberay_rayjobs() -> None:
    """What the goldens pin is something KubeRay accepts (so a regenerated file that
    KubeRay would refuse fails here too)."""
    files = sorted(GOLDEN.glob("*.rayjob.yaml"))
    assert [f.name for f in files] == sorted(f"{case}.rayjob.yaml" for case in CANONICAL)
    for path in files:
        assert_valid_rayjob(yaml.safe_load(path.read_text()))
