"""The chart grants the operator exactly the permissions its code declares.

`finetune_operator.permissions.REQUIRED_PERMISSIONS` is the code's own list. Here the
rendered RBAC objects are resolved the way the API server would (bindings to the
operator's ServiceAccount, then their roles' rules) and compared with it, in both
RBAC modes: nothing missing, nothing extra, no wildcards.
"""

from __future__ import annotations

from typing import Any, Iterable

import pytest

from deploy_support import find, generate, render, the

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)


def _triples(rules: Iterable[dict[str, list[str]]]) -> set[Grant]:
    return {(group, resource, verb)
            for rule in rules
            for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}


def _required() -> set[Grant]:
    from finetune_operator.permissions import REQUIRED_PERMISSIONS

    return _triples(REQUIRED_PERMISSIONS)


def _is_cluster_scoped(grant: Grant) -> bool:
    return (grant[0], grant[1]) in generate.CLUSTER_SCOPED


def _operator_grants(objects: list[dict[str, Any]]) -> tuple[set[Grant], dict[str, set[Grant]]]:
    """What the operator's ServiceAccount may do: cluster-wide, and per namespace."""
    account = the(objects, "ServiceAccount")["metadata"]
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    cluster_roles = {r["metadata"]["name"]: r for r in find(objects, "ClusterRole")}
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in find(objects, "Role")}
    cluster: set[Grant] = set()
    per_namespace: dict[str, set[Grant]] = {}
    for binding in find(objects, "ClusterRoleBinding"):
        if subject in binding["subjects"]:
            assert binding["roleRef"]["kind"] == "ClusterRole"
            cluster |= _triples(cluster_roles[binding["roleRef"]["name"]]["rules"])
    for binding in find(objects, "RoleBinding"):
        if subject in binding["subjects"]:
            namespace = binding["metadata"]["namespace"]
            ref = binding["roleRef"]
            role = roles[(namespace, ref["name"])] if ref["kind"] == "Role" else cluster_roles[ref["name"]]
            per_namespace.setdefault(namespace, set()).update(_triples(role["rules"]))
    return cluster, per_namespace


def test_rules_file_is_the_split_of_required_permissions() -> None:
    from finetune_operator.permissions import REQUIRED_PERMISSIONS

    split = generate.split_rules(REQUIRED_PERMISSIONS)
    assert _triples(split["namespaced"]) | _triples(split["cluster"]) == _required()
    assert all(_is_cluster_scoped(g) for g in _triples(split["cluster"]))
    assert not any(_is_cluster_scoped(g) for g in _triples(split["namespaced"]))


def test_cluster_wide_mode_grants_exactly_the_required_permissions() -> None:
    cluster, per_namespace = _operator_grants(render())
    assert cluster == _required()
    assert per_namespace == {}


def test_namespaced_mode_grants_them_only_in_the_watched_namespaces() -> None:
    namespaces = ["team-a", "team-b"]
    objects = render({"watch": {"namespaces": namespaces}})
    cluster, per_namespace = _operator_grants(objects)
    required = _required()
    # Cluster-wide: only the cluster-scoped reads kopf needs (CRDs, namespaces, peering).
    assert cluster == {g for g in required if _is_cluster_scoped(g)}
    assert sorted(per_namespace) == namespaces
    for namespace in namespaces:
        assert per_namespace[namespace] == {g for g in required if not _is_cluster_scoped(g)}
        # Every required permission holds in a watched namespace, through one binding or the other.
        assert cluster | per_namespace[namespace] == required


@pytest.mark.parametrize("values", [{}, {"watch": {"namespaces": ["ml"]}}, {"replicaCount": 2}])
def test_no_wildcards_anywhere(values: dict[str, Any]) -> None:
    objects = render(values)
    for role in find(objects, "ClusterRole") + find(objects, "Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), role["metadata"]["name"]


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    objects = render({"rbac": {"create": False, "userRoles": False}})
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert not find(objects, kind)


def test_user_roles_aggregate_into_edit_and_view() -> None:
    objects = render()
    editor = the(objects, "ClusterRole", "finetunejobs-editor")
    viewer = the(objects, "ClusterRole", "finetunejobs-viewer")
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in viewer["metadata"]["labels"]
    editor_grants, viewer_grants = _triples(editor["rules"]), _triples(viewer["rules"])
    assert ("finetune.dev", "finetunejobs", "create") in editor_grants
    assert ("finetune.dev", "finetunejobs/status", "patch") not in editor_grants  # the operator's alone
    assert {verb for _, _, verb in viewer_grants} == {"get", "list", "watch"}
    assert {group for group, _, _ in editor_grants | viewer_grants} == {"finetune.dev"}


def test_a_resource_of_unknown_scope_stops_the_generator() -> None:
    rules = [{"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get"]}]
    with pytest.raises(generate.GenerateError, match="storage.k8s.io/storageclasses: add each resource to "
                                                     "CLUSTER_SCOPED or NAMESPACED"):
        generate.split_rules(rules)
