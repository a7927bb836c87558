"""pytest fixtures around the Kubernetes API emulator.

Import the fixtures into a conftest (`from tests.support.kube_fixtures import kube`).
`kube` starts a fresh emulator on a free 127.0.0.1 port for each test, serves our
FineTuneJob CRD, KubeRay's RayJob CRD and kopf's peering CRDs, creates the
`default` namespace, writes a kubeconfig file pointing at the server, and stops it
all afterwards.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import requests
import yaml

from tests.support.kube_emulator import JSON, ApiError, KubeEmulator, kopf_peering_crds

from tests.support.paths import FINETUNE_CRD, RAYJOB_CRD


@functools.lru_cache(maxsize=None)
def _load_documents(path: str) -> tuple[str, ...]:
    """The documents of a YAML/JSON file, cached as JSON text (parsing YAML is slow)."""
    with open(path) as stream:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return tuple(json.dumps(doc) for doc in yaml.load_all(stream, Loader=loader) if doc)


def load_crds(path: Path) -> list[JSON]:
    return [json.loads(text) for text in _load_documents(str(path))]


def project_crds() -> list[JSON]:
    """Every CRD the operator's tests need served."""
    if not FINETUNE_CRD.exists():
        raise FileNotFoundError(f"{FINETUNE_CRD} is missing: generate it with `make crd`")
    return [*kopf_peering_crds(), *load_crds(FINETUNE_CRD), *load_crds(RAYJOB_CRD)]


class HttpClient:
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


class Polling:
    """Polling helpers and an official client, for any handle with `get`, `exists` and
    `kubeconfig_path` (the emulator's and the real server's)."""

    kubeconfig_path: Path

    def kubernetes_client(self) -> Any:
        """An official `kubernetes.client.ApiClient` configured from the kubeconfig file."""
        import kubernetes

        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(self.kubeconfig_path),
                                           client_configuration=configuration)
        return kubernetes.client.ApiClient(configuration)

    def wait_for(self, resource: str, name: str, predicate: Callable[[JSON], bool],
                 namespace: Optional[str] = None, timeout: float = 10.0, interval: float = 0.02) -> JSON:
        """Poll until the object exists and satisfies `predicate`; fail with its last state."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = self.get(resource, name, namespace)
                if predicate(last):
                    return last
            except ApiError as err:
                if err.code != 404:
                    raise
                last = None
            if time.monotonic() > deadline:
                raise AssertionError(f"{resource} {namespace}/{name} did not reach the expected state "
                                     f"within {timeout} s; last seen: {json.dumps(last)[:2000]}")
            time.sleep(interval)

    def wait_gone(self, resource: str, name: str, namespace: Optional[str] = None, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.exists(resource, name, namespace):
            if time.monotonic() > deadline:
                raise AssertionError(f"{resource} {namespace}/{name} still exists after {timeout} s")
            time.sleep(0.02)


class KubeHandle(Polling, KubeEmulator):
    """The emulator plus what tests around it need: a kubeconfig file and polling."""

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(yaml.safe_dump(self.kubeconfig(namespace=namespace)))
        self.kubeconfig_path = path
        return path

    def http(self) -> HttpClient:
        """A plain HTTP client to this server (close its `.session` when done)."""
        return HttpClient(self.url)


def start_kube(tmp_path: Path, *, crds: bool = True, **options: Any) -> KubeHandle:
    """A started emulator with the project's CRDs, `default` namespace and kubeconfig."""
    handle = KubeHandle(**options).start()
    try:
        if crds:
            for crd in project_crds():
                handle.register_crd(crd)
        handle.create_namespace("default")
        handle.write_kubeconfig(tmp_path / "kubeconfig")
    except BaseException:
        handle.stop()
        raise
    return handle


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeHandle]:
    """A fresh Kubernetes API emulator for one test."""
    handle = start_kube(tmp_path)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def kube_env(kube: KubeHandle, monkeypatch: pytest.MonkeyPatch) -> KubeHandle:
    """`kube`, with KUBECONFIG pointing at it for code that reads the environment."""
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig_path))
    return kube


class KubeRayDriver:
    """Plays KubeRay's (and the Job controller's) part for one RayJob.

    The emulator runs no controllers, so scenario tests move a RayJob through its life
    by hand. This does it the way KubeRay would: a submitter batch Job named after the
    RayJob, owned by it; a pod of that Job labelled `batch.kubernetes.io/job-name`
    (and `job-name`) running the `ray-job-submitter` container, whose log carries the
    trainer's progress lines; and the RayJob's status fields.
    """

    def __init__(self, kube: KubeHandle, namespace: str, name: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.pod_name: Optional[str] = None

    def rayjob(self) -> JSON:
        return self.kube.get("rayjobs", self.name, self.namespace)

    def _owner(self, obj: JSON) -> list[JSON]:
        return [{"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                 "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]

    def start(self, log: str = "") -> JSON:
        """Cluster up, job submitted: RayJob Running, submitter Job and pod created."""
        rayjob = self.rayjob()
        labels = {"batch.kubernetes.io/job-name": self.name, "job-name": self.name}
        job = self.kube.create({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": self.name, "namespace": self.namespace, "ownerReferences": self._owner(rayjob)},
            "spec": {"template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Never", "containers": [{"name": "ray-job-submitter", "image": "rayproject/ray"}]}}},
        })
        pod = self.kube.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": f"{self.name}-", "namespace": self.namespace, "labels": labels,
                         "ownerReferences": self._owner(job)},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "ray-job-submitter", "image": "rayproject/ray"}]},
            "status": {"phase": "Running"},
        })
        self.pod_name = pod["metadata"]["name"]
        self.kube.set_pod_log(self.namespace, self.pod_name, log)
        self.kube.patch_status("rayjobs", self.name, {
            "jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "jobId": f"{self.name}-id",
            "rayClusterName": f"{self.name}-raycluster", "startTime": self.kube.store.now(),
        }, namespace=self.namespace)
        return pod

    def log(self, text: str) -> None:
        """Append driver output to the submitter pod's log."""
        assert self.pod_name, "call start() first"
        self.kube.set_pod_log(self.namespace, self.pod_name, text, append=True)

    def progress(self, **report: Any) -> None:
        """Append one trainer progress line (see finetune_trainer.progress)."""
        from finetune_trainer.progress import ProgressReport

        self.log(ProgressReport(**report).to_line() + "\n")

    def finish(self, succeeded: bool = True, message: str = "") -> None:
        """The Ray job ended: RayJob Complete with SUCCEEDED or FAILED, pod finished."""
        assert self.pod_name, "call start() first"
        self.kube.patch_status("pods", self.pod_name, {"phase": "Succeeded" if succeeded else "Failed"},
                               namespace=self.namespace)
        self.kube.patch_status("rayjobs", self.name, {
            "jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED" if succeeded else "FAILED",
            "endTime": self.kube.store.now(), "message": message,
            "succeeded" if succeeded else "failed": 1,
        }, namespace=self.namespace)
