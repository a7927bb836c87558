"""Create, read, update, patch and delete with the API server's bookkeeping and errors."""

from __future__ import annotations

from tests.emulator.helpers import CM, configmap


def test_create_sets_server_fields_and_get_returns_the_object(http):
    created = http.post(CM, configmap("one", a="1"))
    assert created.status_code == 201
    meta = created.json()["metadata"]
    assert meta["namespace"] == "default"
    assert len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    fetched = http.get(f"{CM}/one").json()
    assert fetched == created.json()
    assert fetched["apiVersion"] == "v1" and fetched["kind"] == "ConfigMap"


def test_resource_versions_increase_across_all_resources(http):
    first = int(http.post(CM, configmap("a")).json()["metadata"]["resourceVersion"])
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}
    second = http.post("/api/v1/namespaces/default/secrets", secret).json()
    assert int(second["metadata"]["resourceVersion"]) > first
    assert second["data"] == {"k": "dg=="} and "stringData" not in second
    listed = http.get(CM).json()
    assert int(listed["metadata"]["resourceVersion"]) >= int(second["metadata"]["resourceVersion"])


def test_create_twice_is_409_already_exists_with_a_status_body(http):
    assert http.post(CM, configmap("dup")).status_code == 201
    again = http.post(CM, configmap("dup"))
    assert again.status_code == 409
    body = again.json()
    assert body["kind"] == "Status" and body["reason"] == "AlreadyExists" and body["code"] == 409
    assert body["details"]["name"] == "dup"


def test_missing_object_and_unknown_resource_are_404(http):
    missing = http.get(f"{CM}/nope")
    assert missing.status_code == 404
    assert missing.json()["reason"] == "NotFound" and '"nope" not found' in missing.json()["message"]
    assert http.get("/apis/example.com/v1/widgets").status_code == 404


def test_create_in_a_missing_namespace_is_404(http):
    response = http.post("/api/v1/namespaces/ghost/configmaps", configmap("x"))
    assert response.status_code == 404
    assert 'namespaces "ghost" not found' in response.json()["message"]


def test_invalid_name_is_422_naming_the_field(http):
    response = http.post(CM, configmap("Not_Valid"))
    assert response.status_code == 422
    causes = response.json()["details"]["causes"]
    assert causes[0]["field"] == "metadata.name"


def test_generate_name_gets_a_unique_suffix(http):
    body = {"metadata": {"generateName": "ev-"}, "data": {}}
    names = {http.post(CM, body).json()["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3 and all(name.startswith("ev-") for name in names)


def test_put_with_stale_resource_version_is_409_conflict(http):
    created = http.post(CM, configmap("cm", a="1")).json()
    updated = dict(created, data={"a": "2"})
    response = http.put(f"{CM}/cm", updated)
    assert response.status_code == 200
    assert response.json()["data"] == {"a": "2"}
    stale = dict(created, data={"a": "3"})  # still carries the first resourceVersion
    conflict = http.put(f"{CM}/cm", stale)
    assert conflict.status_code == 409 and conflict.json()["reason"] == "Conflict"
    assert http.get(f"{CM}/cm").json()["data"] == {"a": "2"}


def test_put_keeps_server_owned_metadata(http):
    created = http.post(CM, configmap("keep")).json()
    forged = {"metadata": {"name": "keep", "uid": "forged", "creationTimestamp": "2000-01-01T00:00:00Z"},
              "data": {"b": "1"}}
    result = http.put(f"{CM}/keep", forged).json()
    assert result["metadata"]["uid"] == created["metadata"]["uid"]
    assert result["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]


def test_merge_patch_json_patch_and_no_op_patch(http):
    created = http.post(CM, configmap("p", a="1", b="2")).json()
    merged = http.patch(f"{CM}/p", {"data": {"a": None, "c": "3"}}).json()
    assert merged["data"] == {"b": "2", "c": "3"}
    version = merged["metadata"]["resourceVersion"]
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": version},
           {"op": "add", "path": "/data/d", "value": "4"}]
    patched = http.patch(f"{CM}/p", ops, content_type="application/json-patch+json").json()
    assert patched["data"]["d"] == "4"
    failed = http.patch(f"{CM}/p", ops, content_type="application/json-patch+json")
    assert failed.status_code == 422  # the test op fails on the old resourceVersion, as kopf expects
    same = http.patch(f"{CM}/p", {"data": {"d": "4"}}).json()
    assert same["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    assert int(created["metadata"]["resourceVersion"]) < int(patched["metadata"]["resourceVersion"])


def test_merge_patch_with_stale_resource_version_is_409(http):
    created = http.post(CM, configmap("rv")).json()
    http.patch(f"{CM}/rv", {"data": {"x": "1"}})
    stale = http.patch(f"{CM}/rv", {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                                    "data": {"x": "2"}})
    assert stale.status_code == 409


def test_unsupported_patch_type_is_415(http):
    http.post(CM, configmap("t"))
    response = http.patch(f"{CM}/t", {"data": {}}, content_type="application/apply-patch+yaml")
    assert response.status_code == 415


def test_bad_json_body_is_400(http):
    response = http.session.post(http.base + CM, data="{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["reason"] == "BadRequest"


def test_delete_without_finalizers_removes_at_once(http):
    created = http.post(CM, configmap("gone")).json()
    response = http.delete(f"{CM}/gone")
    assert response.status_code == 200
    assert response.json()["status"] == "Success"
    assert response.json()["details"]["uid"] == created["metadata"]["uid"]
    assert http.get(f"{CM}/gone").status_code == 404
    assert http.delete(f"{CM}/gone").status_code == 404


def test_delete_precondition_on_uid(http):
    http.post(CM, configmap("pre"))
    response = http.delete(f"{CM}/pre", {"preconditions": {"uid": "other"}})
    assert response.status_code == 409
    assert http.get(f"{CM}/pre").status_code == 200


def test_cluster_scoped_and_all_namespace_lists(http, kube):
    kube.create_namespace("team-a")
    http.post("/api/v1/namespaces/team-a/configmaps", configmap("x"))
    http.post(CM, configmap("y"))
    everywhere = http.get("/api/v1/configmaps").json()["items"]
    assert {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere} == {
        ("team-a", "x"), ("default", "y")}
    namespaces = [n["metadata"]["name"] for n in http.get("/api/v1/namespaces").json()["items"]]
    assert {"default", "team-a"} <= set(namespaces)
    assert http.get("/api/v1/namespaces/team-a").json()["status"]["phase"] == "Active"


def test_list_pagination_with_limit_and_continue(http):
    for index in range(5):
        http.post(CM, configmap(f"page{index}"))
    first = http.get(CM, limit=2).json()
    assert len(first["items"]) == 2 and first["metadata"]["continue"]
    names = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = http.get(CM, limit=2, **{"continue": token}).json()
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert names == [f"page{i}" for i in range(5)]


def test_namespace_deletion_removes_its_contents(http, kube):
    kube.create_namespace("doomed")
    http.post("/api/v1/namespaces/doomed/configmaps", configmap("c"))
    assert http.delete("/api/v1/namespaces/doomed").status_code == 200
    assert http.get("/api/v1/namespaces/doomed").status_code == 404
    assert kube.list("configmaps", "doomed") == []


def test_protobuf_bodies_are_refused_with_415(http):
    response = http.session.post(http.base + CM, data=b"k8s\x00...",
                                 headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert response.status_code == 415 and "JSON only" in response.json()["message"]


def test_label_and_annotation_syntax_is_checked(http):
    too_long = "x" * 64
    cases = [
        ({"labels": {"app": too_long}}, "metadata.labels"),
        ({"labels": {"app": "-bad"}}, "metadata.labels"),
        ({"labels": {"Bad_Prefix.io/app": "ok"}}, "metadata.labels"),
        ({"annotations": {too_long: "anything goes in a value"}}, "metadata.annotations"),
        ({"labels": {"app": 3}}, "metadata.labels"),
    ]
    for index, (metadata, field) in enumerate(cases):
        body = {"metadata": {"name": f"c{index}", **metadata}}
        response = http.post(CM, body)
        assert response.status_code == 422, (metadata, response.text)
        assert field in {c["field"] for c in response.json()["details"]["causes"]}
    fine = {"metadata": {"name": "fine", "labels": {"finetune.dev/job-name": "a.b_c-1", "empty": ""},
                         "annotations": {"note": too_long}}}
    assert http.post(CM, fine).status_code == 201


def test_owner_references_need_identity_and_one_controller(http):
    owner = http.post(CM, configmap("owner")).json()
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"],
                 "controller": True}
    two = {"metadata": {"name": "two", "ownerReferences": [reference, dict(reference, name="other")]}}
    response = http.post(CM, two)
    assert response.status_code == 422 and "only one reference can have Controller" in response.text
    nameless = {"metadata": {"name": "nameless", "ownerReferences": [dict(reference, uid="")]}}
    response = http.post(CM, nameless)
    assert response.status_code == 422
    assert response.json()["details"]["causes"][0]["field"] == "metadata.ownerReferences[0].uid"


def test_size_limits_of_annotations_and_configmap_data(http):
    big = "x" * (256 * 1024)
    response = http.post(CM, {"metadata": {"name": "a", "annotations": {"k": big}}})
    assert response.status_code == 422 and "262144 bytes" in response.text
    response = http.post(CM, {"metadata": {"name": "d"}, "data": {"k": "y" * (1024 * 1024 + 1)}})
    assert response.status_code == 422 and "1048576 bytes" in response.text
    assert http.post(CM, {"metadata": {"name": "ok"}, "data": {"k": "y" * 1000}}).status_code == 201
