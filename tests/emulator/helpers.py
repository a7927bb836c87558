"""Helpers for the emulator's own tests: a plain HTTP client and small manifests."""

from __future__ import annotations

import json
from typing import Any, Iterator

import requests

CM = "/api/v1/namespaces/default/configmaps"
FTJ = "/apis/finetune.dev/v1alpha1/namespaces/default/finetunejobs"


class Http:
    """A thin synchronous client speaking the API server's REST dialect."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                **params: Any) -> requests.Response:
        data = None if body is None else json.dumps(body)
        return self.session.request(method, self.base + path, data=data, params=params or None,
                                    headers={"Content-Type": content_type}, timeout=30)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.request("GET", path, **params)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> requests.Response:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any, content_type: str = "application/merge-patch+json") -> requests.Response:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: Any = None, **params: Any) -> requests.Response:
        return self.request("DELETE", path, body, **params)

    def watch(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Events of a watch stream, one per JSON line, until the server ends it."""
        params = {"watch": "true", **params}
        with self.session.get(self.base + path, params=params, stream=True, timeout=30) as response:
            assert response.status_code == 200, response.text
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)


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
