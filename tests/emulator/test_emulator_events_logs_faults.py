"""Events, pod logs and fault injection."""

from __future__ import annotations

import threading
import time

import pytest

from tests.emulator.helpers import CM, configmap

PODS = "/api/v1/namespaces/default/pods"


def _pod(kube, name="submitter"):
    return kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                        "spec": {"containers": [{"name": "c", "image": "x"}]}})


@pytest.mark.parametrize("path", ["/api/v1/namespaces/default/events",
                                  "/apis/events.k8s.io/v1/namespaces/default/events"])
def test_events_are_stored_and_listable(http, path):
    event = {"metadata": {"generateName": "kopf-event-"}, "type": "Normal", "reason": "Created",
             "message": "made it", "involvedObject": {"kind": "FineTuneJob", "name": "job1", "namespace": "default"}}
    assert http.post(path, event).status_code == 201
    items = http.get(path, fieldSelector="involvedObject.name=job1").json()["items"]
    assert [i["reason"] for i in items] == ["Created"]


def test_pod_log_returns_what_the_test_set_with_tail_lines(http, kube):
    _pod(kube)
    assert http.get(f"{PODS}/submitter/log").text == ""
    kube.set_pod_log("default", "submitter", "one\ntwo\n")
    kube.set_pod_log("default", "submitter", "three\n", append=True)
    full = http.get(f"{PODS}/submitter/log")
    assert full.status_code == 200 and full.headers["Content-Type"].startswith("text/plain")
    assert full.text == "one\ntwo\nthree\n"
    assert http.get(f"{PODS}/submitter/log", tailLines=2).text == "two\nthree\n"
    assert http.get(f"{PODS}/submitter/log", tailLines="x").status_code == 400
    assert http.get(f"{PODS}/nobody/log").status_code == 404


def test_pod_log_follow_streams_until_the_pod_finishes(http, kube):
    _pod(kube)
    kube.set_pod_log("default", "submitter", "start\n")
    received = []

    def follow():
        with http.session.get(f"{http.base}{PODS}/submitter/log", params={"follow": "true"}, stream=True,
                              timeout=30) as response:
            for chunk in response.iter_content(chunk_size=None):
                received.append(chunk.decode())

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while "".join(received) != "start\n":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    kube.set_pod_log("default", "submitter", "more\n", append=True)
    kube.patch_status("pods", "submitter", {"phase": "Succeeded"}, namespace="default")
    thread.join(10)
    assert not thread.is_alive()
    assert "".join(received) == "start\nmore\n"


def test_fail_next_injects_errors_for_matching_requests_only(http, kube):
    http.post(CM, configmap("c"))
    kube.fail_next("get", "configmaps", code=500, times=2)
    kube.fail_next("create", "configmaps", code=409)
    assert http.get(f"{CM}/c").status_code == 500
    assert http.get(CM).status_code == 200  # a list is not a get
    assert http.get(f"{CM}/c").status_code == 500
    assert http.get(f"{CM}/c").status_code == 200
    conflict = http.post(CM, configmap("d"))
    assert conflict.status_code == 409 and conflict.json()["kind"] == "Status"
    assert http.post(CM, configmap("d")).status_code == 201
    assert kube.get("configmaps", "c", "default")  # the test side is never faulted
    assert kube.request_count("get", "configmaps") == 3
    counts = kube.request_counts()
    assert counts[("get", "configmaps")] == 3 and counts[("list", "configmaps")] == 1
    assert counts[("create", "configmaps")] == 3  # the first create was made before the faults


def test_an_emulator_bug_comes_back_as_a_500_status(http, kube, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(kube.store, "list", broken)
    response = http.get(CM)
    assert response.status_code == 500
    assert response.json()["reason"] == "InternalError" and "RuntimeError: boom" in response.json()["message"]


def test_stop_ends_log_followers_and_watches_promptly(tmp_path):
    from tests.support.kube_fixtures import start_kube

    kube = start_kube(tmp_path, crds=False)
    _pod(kube)
    http = kube.http()
    ended = []

    def follow():
        with http.session.get(f"{http.base}{PODS}/submitter/log", params={"follow": "true"}, stream=True,
                              timeout=30) as response:
            for _ in response.iter_content(chunk_size=None):
                pass
        ended.append(True)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not any(log.changed is not None for log in kube.store.pod_logs.values()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    started = time.monotonic()
    kube.stop()
    assert time.monotonic() - started < 5
    thread.join(5)
    assert ended == [True]
