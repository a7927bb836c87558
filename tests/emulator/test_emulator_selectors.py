"""Label and field selectors on lists."""

from __future__ import annotations

import pytest

from tests.emulator.helpers import CM, configmap


@pytest.fixture
def labelled(http):
    http.post(CM, configmap("a", {"app": "web", "tier": "front"}))
    http.post(CM, configmap("b", {"app": "web", "tier": "back"}))
    http.post(CM, configmap("c", {"app": "db"}))
    http.post(CM, configmap("d"))
    return http


def names(http, **params):
    response = http.get(CM, **params)
    assert response.status_code == 200, response.text
    return sorted(item["metadata"]["name"] for item in response.json()["items"])


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=web", ["a", "b"]),
    ("app==web,tier=back", ["b"]),
    ("app!=web", ["c", "d"]),
    ("app in (db, web)", ["a", "b", "c"]),
    ("tier notin (front)", ["b", "c", "d"]),
    ("tier", ["a", "b"]),
    ("!tier", ["c", "d"]),
    ("app in (web),!tier", []),
])
def test_label_selectors(labelled, selector, expected):
    assert names(labelled, labelSelector=selector) == expected


def test_field_selectors_on_name_and_namespace(labelled):
    assert names(labelled, fieldSelector="metadata.name=c") == ["c"]
    assert names(labelled, fieldSelector="metadata.name!=c,metadata.namespace=default") == ["a", "b", "d"]


def test_malformed_selector_is_400(labelled):
    response = labelled.get(CM, labelSelector="app in web")
    assert response.status_code == 400
    assert "parentheses" in response.json()["message"]
