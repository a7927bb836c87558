"""Helpers for the emulator's own tests: paths and small manifests (FineTuneJobs come
from tests.support.jobs)."""

from __future__ import annotations

from typing import Any

from tests.support.kube_fixtures import HttpClient as Http  # noqa: F401  (re-exported)

CM = "/api/v1/namespaces/default/configmaps"
FTJ = "/apis/finetune.dev/v1alpha1/namespaces/default/finetunejobs"


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": data}
