"""The emulator handle's test-side API over HTTP to the real kube-apiserver.

Scenario tests are written against `KubeHandle` (tests/support/kube_fixtures.py):
`kube.create(manifest)`, `kube.get("rayjobs", name, "default")`, `kube.patch_status(...)`,
`kube.wait_for(...)`. `RealKubeHandle` offers the same calls, with the same signatures
and the same `ApiError` on failure, against the session's `RealKube`, so one test body
runs on both servers.

One real server serves the whole session, so a handle *resets* the namespaces it uses
(`default` and any it creates) before and after its test: every object of the kinds
the operator and the tests write is deleted, finalizers are stripped, and the handle
waits until they are gone. Names the tests use (`default-reviews` run names, metric
labels) therefore stay as they are.

What the real server cannot do on demand raises `EmulatorOnly`: pod logs (no kubelet),
fault injection and dropped watches. `request_count` is answered from the server's
audit log, counting every request not made by the tests themselves (they send their
own User-Agent).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import yaml

from tests.support.kube_emulator import JSON, ApiError
from tests.support.kube_fixtures import Polling
from tests.support.real_kube import ADMIN, RealKube, api_path, kube_bin_dir, missing_binaries

TEST_AGENT = "finetune-tests"
# What a reset empties in each namespace the test used (plural, apiVersion).
RESET_KINDS = (
    ("finetunejobs", "finetune.dev/v1alpha1"), ("rayjobs", "ray.io/v1"), ("rayclusters", "ray.io/v1"),
    ("jobs", "batch/v1"), ("pods", "v1"), ("configmaps", "v1"), ("secrets", "v1"), ("events", "v1"),
    ("kopfpeerings", "kopf.dev/v1"), ("leases", "coordination.k8s.io/v1"),
)


class EmulatorOnly(NotImplementedError):
    """A call only the emulator can answer; the test belongs on the emulator alone."""


_TABLES: dict[str, dict[str, tuple[str, str, bool, set[str]]]] = {}


def _resources(server: RealKube) -> dict[str, tuple[str, str, bool, set[str]]]:
    """name -> (apiVersion, plural, namespaced, subresources), from the server's discovery.

    Plurals, singulars, kinds and short names all resolve, as kubectl resolves them;
    the core group comes first (so `events` is core/v1 events, not events.k8s.io).
    """
    if server.url in _TABLES:
        return _TABLES[server.url]
    versions = ["v1"] + [group["preferredVersion"]["groupVersion"]
                         for group in server.ok(server.request("GET", "/apis"))["groups"]]
    table: dict[str, tuple[str, str, bool, set[str]]] = {}
    for version in versions:
        path = "/api/v1" if version == "v1" else f"/apis/{version}"
        resources = server.ok(server.request("GET", path))["resources"]
        subresources: dict[str, set[str]] = {}
        for resource in resources:
            if "/" in resource["name"]:
                plural, sub = resource["name"].split("/", 1)
                subresources.setdefault(plural, set()).add(sub)
        group = version.split("/")[0] if "/" in version else ""
        for resource in resources:
            if "/" in resource["name"]:
                continue
            entry = (version, resource["name"], resource["namespaced"], subresources.get(resource["name"], set()))
            names = [resource["name"], resource.get("singularName") or "", resource["kind"].lower(),
                     *(resource.get("shortNames") or [])]
            if group:
                names.append(f"{resource['name']}.{group}")
            for name in names:
                if name:
                    table.setdefault(name, entry)
    _TABLES[server.url] = table
    return table


class RealKubeHandle(Polling):
    """`KubeHandle`'s test-side calls, made over HTTP to a real API server as admin."""

    def __init__(self, server: RealKube, kubeconfig_path: Path) -> None:
        self.server = server
        server.session.headers["User-Agent"] = TEST_AGENT
        self.url = server.url
        self.namespaces: set[str] = {"default"}
        self.write_kubeconfig(kubeconfig_path)
        self._audit_offset = server.audit_log.stat().st_size if server.audit_log.exists() else 0
        self._audit_counts: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------------ plumbing

    def _type(self, resource: str) -> tuple[str, str, bool, set[str]]:
        table = _resources(self.server)
        if resource.lower() not in table:
            raise ApiError(404, "NotFound", f"the server doesn't have a resource type {resource!r}")
        return table[resource.lower()]

    def _path(self, resource: str, name: Optional[str], namespace: Optional[str],
              subresource: Optional[str] = None) -> str:
        version, plural, namespaced, _ = self._type(resource)
        return api_path(version, plural, (namespace or "default") if namespaced else None, name, subresource)

    def _send(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
              **params: Any) -> JSON:
        response = self.server.request(method, path, body, content_type=content_type, **params)
        try:
            payload = response.json()
        except ValueError:
            payload = {"message": response.text}
        if response.status_code >= 300:
            raise ApiError(response.status_code, payload.get("reason", ""), payload.get("message", response.text),
                           details=payload.get("details"))
        return payload

    # ------------------------------------------------------------------ the handle's API

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """An admin kubeconfig for this server at `path` (the operator's, in scenarios)."""
        config = yaml.safe_load(self.server.write_kubeconfig(ADMIN, namespace).read_text())
        path.write_text(yaml.safe_dump(config))
        self.kubeconfig_path = path
        return path

    def create(self, body: JSON, namespace: Optional[str] = None) -> JSON:
        version, plural, namespaced, _ = self._type(body["kind"])
        ns = (namespace or (body.get("metadata") or {}).get("namespace") or "default") if namespaced else None
        if body["kind"] == "Namespace":
            self.namespaces.add(body["metadata"]["name"])
        created = self._send("POST", api_path(version, plural, ns), body)
        # The real server drops .status on create wherever a status subresource exists;
        # the emulator keeps it for built-in kinds, which tests use (a Running pod).
        if body.get("status") and plural in ("pods", "jobs"):
            created = self.patch_status(plural, created["metadata"]["name"], body["status"], ns)
        return created

    def create_namespace(self, name: str) -> JSON:
        return self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def get(self, resource: str, name: str, namespace: Optional[str] = None) -> JSON:
        return self._send("GET", self._path(resource, name, namespace))

    def exists(self, resource: str, name: str, namespace: Optional[str] = None) -> bool:
        try:
            self.get(resource, name, namespace)
        except ApiError as err:
            if err.code == 404:
                return False
            raise
        return True

    def list(self, resource: str, namespace: Optional[str] = None, label_selector: str = "",
             field_selector: str = "") -> list[JSON]:
        version, plural, namespaced, _ = self._type(resource)
        params = {key: value for key, value in (("labelSelector", label_selector),
                                                 ("fieldSelector", field_selector)) if value}
        return self._send("GET", api_path(version, plural, namespace if namespaced else None), **params)["items"]

    def patch(self, resource: str, name: str, patch: Any, namespace: Optional[str] = None,
              subresource: Optional[str] = None, content_type: str = "application/merge-patch+json") -> JSON:
        return self._send("PATCH", self._path(resource, name, namespace, subresource), patch,
                          content_type=content_type)

    def patch_status(self, resource: str, name: str, status: JSON, namespace: Optional[str] = None) -> JSON:
        """Merge-patch `.status` through the status subresource, as KubeRay or the kubelet would."""
        sub = "status" if "status" in self._type(resource)[3] else None
        return self.patch(resource, name, {"status": status}, namespace, sub)

    def delete(self, resource: str, name: str, namespace: Optional[str] = None,
               propagation_policy: Optional[str] = None) -> JSON:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation_policy} \
            if propagation_policy else None
        return self._send("DELETE", self._path(resource, name, namespace), body)

    def request_count(self, verb: str, resource: str) -> int:
        """Requests of `verb` on `resource` since this handle began, by anyone but the
        tests (the audit log's ResponseComplete events, read incrementally)."""
        plural = self._type(resource)[1]
        log = self.server.audit_log
        with open(log, "rb") as stream:
            stream.seek(self._audit_offset)
            chunk = stream.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits
        self._audit_offset += len(complete)
        for line in complete.splitlines():
            event = json.loads(line)
            if event.get("stage") != "ResponseComplete" or event.get("userAgent", "").startswith(TEST_AGENT):
                continue
            key = (event.get("verb", ""), (event.get("objectRef") or {}).get("resource", ""))
            self._audit_counts[key] = self._audit_counts.get(key, 0) + 1
        return self._audit_counts.get((verb, plural), 0)

    def set_pod_log(self, namespace: str, pod: str, text: str, *, append: bool = False) -> None:
        raise EmulatorOnly("pod logs come from a kubelet, and the real server here runs none: "
                           "mark the test @pytest.mark.emulator_only(...)")

    def fail_next(self, *args: Any, **kwargs: Any) -> None:
        raise EmulatorOnly("the real server cannot fail a request on demand: mark the test emulator_only")

    def clear_faults(self) -> None:
        raise EmulatorOnly("the real server cannot fail a request on demand: mark the test emulator_only")

    def close_watches(self) -> int:
        raise EmulatorOnly("the real server cannot drop watch streams on demand: mark the test emulator_only")

    def open_watches(self) -> int:
        raise EmulatorOnly("the real server does not count open watches: mark the test emulator_only")

    # ------------------------------------------------------------------ isolation

    def reset(self, timeout: float = 30.0) -> None:
        """Empty every namespace this handle used of the kinds in RESET_KINDS."""
        for namespace in sorted(self.namespaces):
            if not self.exists("namespaces", namespace):
                continue
            for plural, version in RESET_KINDS:
                path = api_path(version, plural, namespace)
                self.server.request("DELETE", path, gracePeriodSeconds="0")
            deadline = time.monotonic() + timeout
            for plural, version in RESET_KINDS:
                path = api_path(version, plural, namespace)
                while items := self._send("GET", path)["items"]:
                    for item in items:  # nobody runs the finalizers now: drop them
                        if item["metadata"].get("finalizers"):
                            self.server.request("PATCH", f"{path}/{item['metadata']['name']}",
                                                {"metadata": {"finalizers": None}},
                                                content_type="application/merge-patch+json")
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{plural} in {namespace} not gone within {timeout} s: "
                                             f"{[i['metadata']['name'] for i in items]}")
                    time.sleep(0.05)


@pytest.fixture(scope="session")
def real_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealKube]:
    """One real etcd + kube-apiserver for the session (skipped, saying how to build
    them, when the binaries are missing)."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"{', '.join(missing)} not built in {kube_bin_dir()}: run tests/kube/build.sh "
                    "(make test does) or point FINETUNE_KUBE_BIN_DIR at them")
    server = RealKube(tmp_path_factory.mktemp("real-kube"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
