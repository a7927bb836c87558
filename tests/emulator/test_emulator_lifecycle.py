"""Generation, the status subresource, finalizers and owner-reference garbage collection."""

from __future__ import annotations

from tests.emulator.helpers import CM, FTJ, configmap
from tests.support.jobs import fine_tune_job


def test_generation_bumps_only_on_spec_changes(http):
    created = http.post(FTJ, fine_tune_job()).json()
    assert created["metadata"]["generation"] == 1
    labelled = http.patch(f"{FTJ}/job1", {"metadata": {"labels": {"team": "a"}}}).json()
    assert labelled["metadata"]["generation"] == 1
    status = http.patch(f"{FTJ}/job1/status", {"status": {"phase": "Running"}}).json()
    assert status["metadata"]["generation"] == 1
    changed = http.patch(f"{FTJ}/job1", {"spec": {"outputPolicy": "Delete"}}).json()
    assert changed["metadata"]["generation"] == 2


def test_writes_to_the_main_resource_ignore_status(http):
    body = fine_tune_job()
    body["status"] = {"phase": "Succeeded"}
    created = http.post(FTJ, body).json()
    assert "status" not in created
    http.patch(f"{FTJ}/job1/status", {"status": {"phase": "Running"}})
    patched = http.patch(f"{FTJ}/job1", {"status": {"phase": "Failed"}, "metadata": {"labels": {"a": "b"}}})
    assert patched.json()["status"]["phase"] == "Running"
    assert patched.json()["metadata"]["labels"] == {"a": "b"}


def test_writes_to_status_ignore_everything_else(http):
    http.post(FTJ, fine_tune_job())
    result = http.patch(f"{FTJ}/job1/status", {"status": {"phase": "Running"}, "spec": {"outputPolicy": "Delete"},
                                               "metadata": {"labels": {"x": "y"}}}).json()
    assert result["status"]["phase"] == "Running"
    assert result["spec"]["outputPolicy"] == "Retain"
    assert "labels" not in result["metadata"]
    current = http.get(f"{FTJ}/job1").json()
    replaced = http.put(f"{FTJ}/job1/status", dict(current, status={"phase": "Failed"})).json()
    assert replaced["status"]["phase"] == "Failed"
    assert replaced["status"]["attempt"] == 0  # defaulted from the CRD schema


def test_status_subresource_of_a_resource_without_one_is_404(http):
    http.post(CM, configmap("c"))
    assert http.patch(f"{CM}/c/status", {"status": {}}).status_code == 404


def test_delete_with_finalizers_only_marks_until_the_last_is_removed(http):
    body = configmap("fin")
    body["metadata"]["finalizers"] = ["a.example/one", "b.example/two"]
    http.post(CM, body)
    marked = http.delete(f"{CM}/fin")
    assert marked.status_code == 200
    assert marked.json()["metadata"]["deletionTimestamp"]
    assert http.get(f"{CM}/fin").json()["metadata"]["finalizers"] == ["a.example/one", "b.example/two"]
    adding = http.patch(f"{CM}/fin", {"metadata": {"finalizers": ["a.example/one", "b.example/two", "c/three"]}})
    assert adding.status_code == 422
    http.patch(f"{CM}/fin", {"metadata": {"finalizers": ["b.example/two"]}})
    assert http.get(f"{CM}/fin").status_code == 200
    http.patch(f"{CM}/fin", {"metadata": {"finalizers": None}})
    assert http.get(f"{CM}/fin").status_code == 404


def _owned_by(owner, name, block=False):
    body = configmap(name)
    body["metadata"]["ownerReferences"] = [{
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": block}]
    return body


def test_background_deletion_collects_dependents_recursively(http, kube):
    owner = http.post(FTJ, fine_tune_job()).json()
    child = http.post(CM, _owned_by(owner, "child")).json()
    http.post(CM, _owned_by(child, "grandchild"))
    http.post(CM, configmap("unrelated"))
    http.delete(f"{FTJ}/job1")
    names = {c["metadata"]["name"] for c in kube.list("configmaps", "default")}
    assert names == {"unrelated"}


def test_a_dependent_with_a_live_second_owner_survives(http, kube):
    first = http.post(CM, configmap("owner-1")).json()
    second = http.post(CM, configmap("owner-2")).json()
    body = _owned_by(first, "shared")
    body["metadata"]["ownerReferences"] += [
        dict(ref, controller=False) for ref in _owned_by(second, "x")["metadata"]["ownerReferences"]]
    assert http.post(CM, body).status_code == 201
    http.delete(f"{CM}/owner-1")
    assert kube.exists("configmaps", "shared", "default")
    http.delete(f"{CM}/owner-2")
    assert not kube.exists("configmaps", "shared", "default")


def test_foreground_deletion_waits_for_blocking_dependents(http, kube):
    owner = http.post(FTJ, fine_tune_job()).json()
    body = _owned_by(owner, "blocker", block=True)
    body["metadata"]["finalizers"] = ["test/hold"]
    http.post(CM, body)
    http.delete(f"{FTJ}/job1", propagationPolicy="Foreground")
    held = http.get(f"{FTJ}/job1").json()
    assert "foregroundDeletion" in held["metadata"]["finalizers"]
    assert http.get(f"{CM}/blocker").json()["metadata"]["deletionTimestamp"]
    http.patch(f"{CM}/blocker", {"metadata": {"finalizers": None}})
    assert http.get(f"{CM}/blocker").status_code == 404
    assert http.get(f"{FTJ}/job1").status_code == 404


def test_orphan_deletion_keeps_dependents_without_the_reference(http, kube):
    owner = http.post(FTJ, fine_tune_job()).json()
    http.post(CM, _owned_by(owner, "orphan"))
    http.delete(f"{FTJ}/job1", {"propagationPolicy": "Orphan"})
    orphan = http.get(f"{CM}/orphan").json()
    assert "ownerReferences" not in orphan["metadata"]


def test_pod_status_is_a_subresource_the_test_can_set(kube):
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                 "spec": {"containers": [{"name": "c", "image": "x"}]}})
    pod = kube.patch_status("pods", "p", {"phase": "Running"}, namespace="default")
    assert pod["status"] == {"phase": "Running"}
    assert kube.get("pods", "p", "default")["status"]["phase"] == "Running"



def test_a_dependent_created_after_its_owner_went_is_collected(http, kube):
    owner = http.post(CM, configmap("owner")).json()
    http.delete(f"{CM}/owner")
    assert http.post(CM, _owned_by(owner, "late")).status_code == 201
    assert not kube.exists("configmaps", "late", "default")
    # An owner the server never saw is not checked (tests build such objects on purpose).
    stranger = _owned_by(owner, "stranger")
    stranger["metadata"]["ownerReferences"][0]["uid"] = "never-existed"
    assert http.post(CM, stranger).status_code == 201
    assert kube.exists("configmaps", "stranger", "default")
