"""The real server itself: up, authenticating, authorizing, serving our CRDs."""

from __future__ import annotations

import pytest

from tests.support.real_kube import RealKube, service_account_user

pytestmark = pytest.mark.kube


def test_server_is_ready_and_serves_our_crds(real_kube: RealKube) -> None:
    assert real_kube.request("GET", "/readyz").status_code == 200
    version = real_kube.ok(real_kube.request("GET", "/version"))
    assert version["major"] == "1" and version["minor"].startswith("37") or version["gitVersion"]
    resources = {r["name"] for r in real_kube.ok(real_kube.request("GET", "/apis/finetune.dev/v1alpha1"))["resources"]}
    assert {"finetunejobs", "finetunejobs/status"} <= resources
    ray = {r["name"] for r in real_kube.ok(real_kube.request("GET", "/apis/ray.io/v1"))["resources"]}
    assert {"rayjobs", "rayjobs/status", "rayclusters"} <= ray


def test_an_unbound_identity_is_forbidden_and_a_bad_token_unauthorized(real_kube: RealKube) -> None:
    user = service_account_user("finetune-operator")
    response = real_kube.request("GET", "/apis/finetune.dev/v1alpha1/namespaces/default/finetunejobs", user=user)
    assert response.status_code == 403, response.text
    assert user in response.json()["message"]
    real_kube.tokens["nobody"] = "not-a-token"
    assert real_kube.request("GET", "/api/v1/namespaces", user="nobody").status_code == 401
