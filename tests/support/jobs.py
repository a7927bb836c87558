"""The one FineTuneJob factory every test suite builds its manifests with.

`fine_tune_job(name, namespace, **spec_overrides)` returns a manifest whose spec is
BASE_SPEC (only the required fields) with the overrides deep-merged in, key by key, so
a test names only what it is about: `fine_tune_job("j", training={"epochs": 2})` keeps
the base model, data and output. A suite whose jobs are run by the operator starts from
RUNNABLE_SPEC instead (`runnable_job(...)`, or `base=RUNNABLE_SPEC`): a small labelled
model, a few steps, one CPU worker.

`stored_job(...)` is the same manifest as the API server returns it (uid, generation,
creationTimestamp, optionally a status) together with its validated spec, for the
operator's pure builders; `job_config(...)` is the trainer's JobConfig for a spec.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

from tests.support.helpers import deep_merge

API_VERSION = "finetune.dev/v1alpha1"
KIND = "FineTuneJob"

BASE_SPEC: dict[str, Any] = {
    "model": {"source": "/models/tiny-bert"},
    "data": {"train": "s3://datasets/reviews/train.csv"},
    "output": {"uri": "s3://models/reviews"},
}

RUNNABLE_SPEC: dict[str, Any] = deep_merge(BASE_SPEC, {
    "model": {"labels": ["negative", "positive"]},
    "training": {"maxSteps": 4, "batchSize": 4},
    "resources": {"workers": 1, "worker": {"cpu": "1", "memory": "2Gi"}},
})


def fine_tune_job(name: str = "job1", namespace: Optional[str] = "default", *,
                  labels: Optional[Mapping[str, str]] = None, metadata: Optional[Mapping[str, Any]] = None,
                  status: Optional[Mapping[str, Any]] = None, base: Mapping[str, Any] = BASE_SPEC,
                  **spec_overrides: Any) -> dict[str, Any]:
    """A FineTuneJob manifest: `base` with `spec_overrides` deep-merged in.

    `namespace=None` leaves the namespace out (a manifest as a user writes it);
    `labels=None` leaves labels out; `metadata` is merged into the metadata last.
    """
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels is not None:
        meta["labels"] = dict(labels)
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": deep_merge(meta, dict(metadata or {})),
        "spec": deep_merge(dict(base), spec_overrides),
    }
    if status is not None:
        manifest["status"] = copy.deepcopy(dict(status))
    return manifest


def stored_job(name: str = "reviews", namespace: str = "team-a", uid: str = "0b1c2d3e-uid",
               generation: int = 1, status: Optional[dict] = None, labels: Optional[dict] = None,
               created: str = "2026-01-01T00:00:00Z", **spec_overrides: Any) -> tuple[dict, Any]:
    """The FineTuneJob as the API server stores it (defaults applied by the spec model,
    server-set metadata filled in) and its validated `FineTuneJobSpec`."""
    from finetune_operator.api import FineTuneJobSpec

    manifest = fine_tune_job(name, namespace, labels=labels or {}, status=status,
                             metadata={"uid": uid, "generation": generation, "creationTimestamp": created},
                             **spec_overrides)
    spec = FineTuneJobSpec.model_validate(manifest["spec"])
    manifest["spec"] = spec.to_dict()
    return manifest, spec


def runnable_job(name: str, namespace: Optional[str] = "default", **overrides: Any) -> dict[str, Any]:
    """`fine_tune_job` from RUNNABLE_SPEC: the job the operator suites create."""
    return fine_tune_job(name, namespace, base=RUNNABLE_SPEC, **overrides)


def job_config(name: str = "j", *, scaling: Optional[Mapping[str, Any]] = None, base: Mapping[str, Any] = BASE_SPEC,
               **spec_overrides: Any) -> Any:
    """The trainer's `JobConfig` for the same spec (what the operator's ConfigMap
    carries), for trainer tests that need no manifest around it."""
    from finetune_trainer.config import JobConfig

    document: dict[str, Any] = {"name": name, "config": deep_merge(dict(base), spec_overrides)}
    if scaling is not None:
        document["scaling"] = dict(scaling)
    return JobConfig.model_validate(document)
