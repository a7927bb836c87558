"""Discovery documents, and the official Kubernetes client against the server."""

from __future__ import annotations

import kubernetes


def test_version_and_group_discovery(http):
    assert http.get("/version").json()["major"] == "1"
    assert http.get("/api").json()["versions"] == ["v1"]
    groups = {g["name"]: g for g in http.get("/apis").json()["groups"]}
    assert {"finetune.dev", "ray.io", "kopf.dev", "batch", "coordination.k8s.io", "events.k8s.io",
            "apiextensions.k8s.io"} <= set(groups)
    assert groups["finetune.dev"]["preferredVersion"]["version"] == "v1alpha1"


def test_resource_lists_carry_subresources_and_verbs(http):
    core = {r["name"]: r for r in http.get("/api/v1").json()["resources"]}
    assert {"pods", "pods/log", "pods/status", "events", "configmaps", "secrets", "namespaces"} <= set(core)
    assert "watch" in core["pods"]["verbs"] and core["namespaces"]["namespaced"] is False
    ours = {r["name"]: r for r in http.get("/apis/finetune.dev/v1alpha1").json()["resources"]}
    assert ours["finetunejobs"]["kind"] == "FineTuneJob"
    assert ours["finetunejobs"]["shortNames"] == ["ftj"]
    assert "finetunejobs/status" in ours
    peering = {r["name"]: r for r in http.get("/apis/kopf.dev/v1").json()["resources"]}
    assert peering["clusterkopfpeerings"]["namespaced"] is False and peering["kopfpeerings"]["namespaced"]
    assert http.get("/apis/nothing.example/v1").status_code == 404


def test_official_kubernetes_client_round_trip(kube):
    with kube.kubernetes_client() as api_client:
        core = kubernetes.client.CoreV1Api(api_client)
        core.create_namespaced_config_map("default", {"metadata": {"name": "k"}, "data": {"a": "1"}})
        assert core.read_namespaced_config_map("k", "default").data == {"a": "1"}
        custom = kubernetes.client.CustomObjectsApi(api_client)
        items = custom.list_namespaced_custom_object("finetune.dev", "v1alpha1", "default", "finetunejobs")
        assert items["items"] == []
        try:
            core.read_namespaced_config_map("missing", "default")
        except kubernetes.client.ApiException as err:
            assert err.status == 404
        else:
            raise AssertionError("a missing object must raise")
