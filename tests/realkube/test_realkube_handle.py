"""RealKubeHandle, the emulator handle's calls over HTTP to the real server, on which the
scenario suite's [real] runs stand: names resolve as kubectl resolves them, errors are
the emulator's ApiError, a reset empties the namespaces a test used (finalizers too),
and request counts leave out the tests' own requests."""

from __future__ import annotations

import pytest
import requests

from tests.support.kube_emulator import ApiError
from tests.support.real_kube import RealKube
from tests.support.real_kube_handle import EmulatorOnly, RealKubeHandle

pytestmark = pytest.mark.kube


@pytest.fixture
def handle(real_kube: RealKube, tmp_path) -> RealKubeHandle:
    return RealKubeHandle(real_kube, tmp_path / "kubeconfig")


def test_names_resolve_like_kubectl_and_errors_are_api_errors(handle):
    handle.create_namespace("handle-names")
    handle.create({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm", "namespace": "handle-names"}, "data": {"a": "1"}})
    for name in ("configmaps", "configmap", "cm", "ConfigMap"):
        assert handle.get(name, "cm", "handle-names")["data"] == {"a": "1"}
    with pytest.raises(ApiError) as missing:
        handle.get("configmaps", "nope", "handle-names")
    assert missing.value.code == 404 and missing.value.reason == "NotFound"
    with pytest.raises(ApiError) as taken:
        handle.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "handle-names"}})
    assert taken.value.code == 409
    # `events` is core/v1 (involvedObject), not events.k8s.io (regarding).
    assert handle._type("events")[0] == "v1"
    assert handle._type("rayjobs.ray.io")[1] == "rayjobs"
    handle.reset()


def test_a_created_pod_keeps_the_status_the_test_gave_it(handle):
    handle.create_namespace("handle-pods")
    pod = handle.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "handle-pods"},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                         "status": {"phase": "Running"}})
    assert pod["status"]["phase"] == "Running"
    with pytest.raises(EmulatorOnly, match="kubelet"):
        handle.set_pod_log("handle-pods", "p", "text")
    handle.reset()


def test_reset_empties_the_namespaces_used_finalizers_and_all(handle):
    handle.create_namespace("handle-reset")
    handle.create({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "held", "namespace": "handle-reset", "finalizers": ["example.com/hold"]}})
    handle.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "handle-reset"},
                   "stringData": {"k": "v"}})
    handle.delete("configmaps", "held", "handle-reset")
    assert handle.get("configmaps", "held", "handle-reset")["metadata"]["deletionTimestamp"]
    handle.reset()
    assert handle.list("configmaps", "handle-reset") == []
    assert handle.list("secrets", "handle-reset") == []


def test_request_counts_leave_out_the_tests_own_requests(handle, real_kube):
    handle.create_namespace("handle-count")
    handle.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "handle-count"}})
    for _ in range(3):
        handle.get("configmaps", "cm", "handle-count")
    before = handle.request_count("get", "configmaps")
    # Someone else (here: another client, as the operator would be) reads it twice.
    path = "/api/v1/namespaces/handle-count/configmaps/cm"
    for _ in range(2):
        response = requests.get(real_kube.url + path, verify=str(real_kube.ca_cert), timeout=10,
                                headers={"Authorization": f"Bearer {real_kube.tokens['admin']}",
                                         "User-Agent": "someone-else"})
        assert response.status_code == 200

    def counted() -> int:
        return handle.request_count("get", "configmaps") - before
    handle.wait_for("configmaps", "cm", lambda obj: counted() == 2, "handle-count", timeout=10)
    handle.reset()
