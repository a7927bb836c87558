"""The chaos loops' side of the API server: plain HTTP as admin, one session per user.

Every request carries User-Agent `finetune-chaos`, so counts read from the server's
audit log (`operator_requests`) leave the loops' own requests out and see only what
the operator did. A `ChaosApi` is not shared between threads: each thread (the
KubeRay player, the recorder, the job creator) makes its own with `clone()`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional

import requests

from tests.support.real_kube import ADMIN, RealKube, api_path

JSON = dict[str, Any]
AGENT = "finetune-chaos"
JOBS_API = "finetune.dev/v1alpha1"
RAYJOBS_API = "ray.io/v1"


class ChaosApi:
    def __init__(self, server: RealKube) -> None:
        self.server = server
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": AGENT, "Authorization": f"Bearer {server.tokens[ADMIN]}"})
        # verify= goes with each request: requests lets REQUESTS_CA_BUNDLE override a session's.
        self.verify = str(server.ca_cert)

    def clone(self) -> "ChaosApi":
        return ChaosApi(self.server)

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json", timeout: float = 30, **params: Any) -> requests.Response:
        """One request; a 429 (a CRD's storage still initializing) is retried after its
        Retry-After, for up to a minute."""
        data = None if body is None else json.dumps(body)
        deadline = time.monotonic() + 60
        while True:
            response = self.session.request(method, self.server.url + path, data=data, params=params or None,
                                            headers={"Content-Type": content_type}, timeout=timeout,
                                            verify=self.verify)
            if response.status_code != 429 or time.monotonic() > deadline:
                return response
            time.sleep(float(response.headers.get("Retry-After") or 1))

    def ok(self, response: requests.Response) -> JSON:
        if response.status_code >= 300:
            raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} "
                               f"{response.text[:500]}")
        return response.json()

    def items(self, api_version: str, plural: str, namespace: Optional[str] = None, **params: Any) -> list[JSON]:
        return self.ok(self.request("GET", api_path(api_version, plural, namespace), **params))["items"]

    def create(self, api_version: str, plural: str, namespace: str, body: JSON) -> JSON:
        return self.ok(self.request("POST", api_path(api_version, plural, namespace), body))

    def patch_status(self, api_version: str, plural: str, namespace: str, name: str, status: JSON) -> JSON:
        path = api_path(api_version, plural, namespace, name, "status")
        return self.ok(self.request("PATCH", path, {"status": status}, content_type="application/merge-patch+json"))

    def create_namespace(self, name: str) -> None:
        response = self.request("POST", "/api/v1/namespaces",
                                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        if response.status_code not in (201, 409):
            self.ok(response)

    def watch(self, api_version: str, plural: str, resource_version: str,
              timeout_seconds: int = 60, **extra: str) -> Iterator[JSON]:
        """The events of one watch stream across all namespaces, from `resource_version`."""
        path = api_path(api_version, plural)
        params = {"watch": "true", "resourceVersion": resource_version, "timeoutSeconds": str(timeout_seconds),
                  "allowWatchBookmarks": "true", **extra}
        with self.session.get(self.server.url + path, params=params, stream=True,
                              timeout=(10, timeout_seconds + 30), verify=self.verify) as response:
            if response.status_code != 200:
                raise RuntimeError(f"watch {path}: {response.status_code} {response.text[:300]}")
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)


def operator_requests(audit_log: Path, since: int = 0) -> tuple[Counter, int]:
    """(verb, resource, code) -> count of the requests made by anyone but the chaos
    loops and the tests, from byte `since` of the audit log; and the offset read up to."""
    counts: Counter = Counter()
    with open(audit_log, "rb") as stream:
        stream.seek(since)
        chunk = stream.read()
    complete = chunk[:chunk.rfind(b"\n") + 1]
    for line in complete.splitlines():
        event = json.loads(line)
        agent = event.get("userAgent", "")
        if event.get("stage") != "ResponseComplete" or agent.startswith(AGENT) or agent.startswith("finetune-tests"):
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        code = (event.get("responseStatus") or {}).get("code", 0)
        counts[(event.get("verb", ""), resource, code)] += 1
        if event.get("verb") == "create" and code == 201 and ref.get("resource") in ("rayjobs", "configmaps"):
            counts[("created", ref["resource"], f"{ref.get('namespace')}/{ref.get('name')}")] += 1
    return counts, since + len(complete)
