"""Child names and labels: deterministic, valid, bounded and distinct."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from finetune_operator import naming
from finetune_operator.api import GROUP

NAMES = ["reviews", "a", "9lives", "v1.2-rc.3", "x" * 47, "x" * 48, "y" * 63, "z" * 253,
         "team.model." + "q" * 200]
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("name", NAMES)
def test_rayjob_name_is_what_kuberay_accepts(name):
    child = naming.rayjob_name(name)
    assert len(child) <= 47
    assert DNS1035.match(child), child


@pytest.mark.parametrize("name", NAMES)
def test_configmap_name_is_a_dns_label(name):
    child = naming.configmap_name(name)
    assert len(child) <= 63
    assert DNS1123.match(child), child


@pytest.mark.parametrize(("name", "rayjob", "configmap"), [
    ("z" * 253, "z" * 38 + "-e939f461", "z" * 54 + "-e939f461"),
    ("team.model." + "q" * 200, "team-model-" + "q" * 27 + "-410c7463", "team-model-" + "q" * 43 + "-410c7463"),
    ("v1.2-rc.3", "v1-2-rc-3-ab8bee7c", "v1-2-rc-3-config-ab8bee7c"),
    ("9lives", "j-9lives-bc867356", "9lives-config"),
])
def test_child_names_are_the_same_in_every_process(name, rayjob, configmap):
    """Literal names: a restarted operator (another process, another hash seed) must
    find the children the last one made."""
    assert naming.rayjob_name(name) == rayjob
    assert naming.configmap_name(name) == configmap


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


def test_owned_labels():
    labels = naming.owned_labels("reviews", "uid-1", naming.COMPONENT_RAYJOB)
    assert labels == {
        "app.kubernetes.io/managed-by": "finetune-operator",
        "app.kubernetes.io/part-of": "finetune",
        "app.kubernetes.io/component": "rayjob",
        "finetune.dev/job-name": "reviews",
        "finetune.dev/job-uid": "uid-1",
    }


def test_random_names_stay_valid_and_distinct():
    """Two thousand random DNS-subdomain job names (seeded): every child name is
    valid and bounded, and no two jobs share a child name."""
    import random

    rng = random.Random(20260301)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-."
    names = set()
    while len(names) < 2000:
        length = rng.choice([1, 5, 30, 46, 47, 48, 62, 63, 64, 120, 253])
        middle = "".join(rng.choice(alphabet) for _ in range(max(length - 2, 0)))
        name = (rng.choice("abc123") + middle + rng.choice("xyz789"))[:length]
        if re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", name):
            names.add(name)
    rayjobs = {naming.rayjob_name(name) for name in names}
    configmaps = {naming.configmap_name(name) for name in names}
    assert len(rayjobs) == len(configmaps) == len(names)
    assert all(len(child) <= 47 and DNS1035.match(child) for child in rayjobs)
    assert all(len(child) <= 63 and DNS1123.match(child) for child in configmaps)


def _naming_keys() -> dict[str, str]:
    """naming's label keys, annotation keys, metadata keys and finalizer, by value."""
    suffixes = ("_LABEL", "_ANNOTATION", "_KEY", "FINALIZER")
    return {value: name for name, value in vars(naming).items()
            if name.endswith(suffixes) and isinstance(value, str)}


def _string_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Every str constant, and every f-string made of GROUP and constant text."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                if isinstance(value, ast.Constant):
                    parts.append(value.value)
                elif isinstance(value, ast.FormattedValue) and getattr(value.value, "id", None) == "GROUP":
                    parts.append(GROUP)
                else:
                    break
            else:
                found.append((node.lineno, "".join(parts)))
    return found


def test_every_label_and_annotation_key_is_spelt_only_in_naming():
    """A key spelt out again elsewhere is one rename away from two spellings."""
    keys = _naming_keys()
    package = Path(naming.__file__).parent
    strays = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "naming.py" and path.parent == package:
            continue
        for line, text in _string_literals(ast.parse(path.read_text())):
            if text in keys:
                strays.append(f"{path.relative_to(package)}:{line}: {text!r} is naming.{keys[text]}")
    assert not strays, "\n".join(strays)
