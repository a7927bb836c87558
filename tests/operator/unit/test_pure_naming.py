"""Child names and labels: deterministic, valid, bounded and distinct."""

from __future__ import annotations

import re

import pytest

from finetune_operator import naming

NAMES = ["reviews", "a", "9lives", "v1.2-rc.3", "x" * 47, "x" * 48, "y" * 63, "z" * 253,
         "team.model." + "q" * 200]
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("name", NAMES)
def test_rayjob_name_is_what_kuberay_accepts(name):
    child = naming.rayjob_name(name)
    assert len(child) <= 47
    assert DNS1035.match(child), child
    assert naming.rayjob_name(name) == child


@pytest.mark.parametrize("name", NAMES)
def test_configmap_name_is_a_dns_label(name):
    child = naming.configmap_name(name)
    assert len(child) <= 63
    assert DNS1123.match(child), child
    assert naming.configmap_name(name) == child


@pytest.mark.parametrize("name", ["reviews", "a-b", "x" * 47])
def test_short_clean_names_are_kept(name):
    assert naming.rayjob_name(name) == name
    assert naming.configmap_name(name) == f"{name}-config"


@pytest.mark.parametrize(("first", "second"), [
    ("a.b", "a-b"),
    ("x" * 60 + "1", "x" * 60 + "2"),
    ("9lives", "j-9lives"),
])
def test_names_that_would_collide_stay_distinct(first, second):
    assert naming.rayjob_name(first) != naming.rayjob_name(second)
    assert naming.configmap_name(first) != naming.configmap_name(second)


def test_run_name_is_namespace_and_name():
    assert naming.run_name("team-a", "reviews") == "team-a-reviews"
    long = naming.run_name("n" * 63, "m" * 253)
    assert len(long) <= 253
    assert re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", long)
    assert long != naming.run_name("n" * 63, "m" * 252 + "k")


@pytest.mark.parametrize(("value", "valid"), [("reviews", True), ("a" * 63, True), ("a" * 64, False),
                                              ("model.v1", True), ("-x-", False)])
def test_label_value(value, valid):
    label = naming.label_value(value)
    assert len(label) <= 63
    assert re.match(r"^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$", label)
    assert (label == value) is valid


def test_owned_labels_and_selector():
    labels = naming.owned_labels("reviews", "uid-1", naming.COMPONENT_RAYJOB)
    assert labels == {
        "app.kubernetes.io/managed-by": "finetune-operator",
        "app.kubernetes.io/part-of": "finetune",
        "app.kubernetes.io/component": "rayjob",
        "finetune.dev/job-name": "reviews",
        "finetune.dev/job-uid": "uid-1",
    }
    selector = dict(part.split("=") for part in naming.owned_selector("uid-1").split(","))
    assert all(labels[key] == value for key, value in selector.items())
