"""Helpers for the emulator's own tests: paths and small manifests."""

from __future__ import annotations

from typing import Any

from tests.support.kube_fixtures import HttpClient as Http  # noqa: F401  (re-exported)

CM = "/api/v1/namespaces/default/configmaps"
FTJ = "/apis/finetune.dev/v1alpha1/namespaces/default/finetunejobs"


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": data}


def finetunejob(name: str = "job1", **spec: Any) -> dict[str, Any]:
    """A small valid FineTuneJob manifest."""
    body = {
        "apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": name},
        "spec": {
            "model": {"source": "prajjwal1/bert-tiny", "labels": ["neg", "pos"]},
            "data": {"train": "s3://bucket/train.csv"},
            "output": {"uri": "s3://bucket/out"},
        },
    }
    body["spec"].update(spec)
    return body
