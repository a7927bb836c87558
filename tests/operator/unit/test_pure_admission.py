"""Tenancy checks, the immutable-spec diff and the per-namespace queue."""

from __future__ import annotations

import copy

import pytest

from finetune_operator import admission
from finetune_operator.admission import JobSummary, admit, forbidden_changes
from finetune_operator.api import MUTABLE_SPEC_PATHS, SchedulingSpec
from finetune_operator.settings import Settings
from pure_helpers import BASE_SPEC

TENANT = Settings(storage_prefixes={"team-a": "s3://shared/team-a/"}, priority_classes={"high": 1000, "low": -5})


@pytest.mark.parametrize(("uri", "allowed"), [
    ("s3://shared/team-a/model", True),
    ("s3://shared/team-a", True),
    ("s3://shared/team-a/deep/er/path", True),
    ("s3://shared/team-a-evil/model", False),
    ("s3://shared/team-b/model", False),
    ("s3://shared/team-a/../team-b/model", False),
    ("/local/path", False),
    # path tricks
    ("s3://shared/team-a/x/..", False),
    ("s3://shared/team-a//../team-b", False),
    ("s3://shared/team-a/%2e%2e/team-b", False),
    ("s3://shared/team-a/%2E%2E%2fteam-b", False),
    ("s3://shared/team-a%2f..%2fteam-b", False),
    ("s3://shared/team-a/..%5cteam-b", False),
    ("s3://shared/team-a\\..\\team-b", False),
    ("s3://shared//team-a/model", False),
    ("s3://other-bucket/team-a/model", False),
    ("S3://shared/team-a/model", False),
    ("s3://shared/team-a/a%20model", True),
    ("s3://shared/team-a/./model", True),
])
def test_storage_prefix(make_job, uri, allowed):
    _, spec = make_job(output={"uri": uri})
    decision = admission.check_storage("team-a", spec, TENANT)
    if allowed:
        assert decision is None
    else:
        assert decision.state == "rejected"
        assert decision.reason == "StorageNotAllowed"
        assert "output.uri" in decision.message and "s3://shared/team-a/" in decision.message


@pytest.mark.parametrize(("endpoint", "allowed"), [
    (None, True),
    ("http://minio.platform:9000", True),
    ("http://MINIO.platform:9000/", True),
    ("http://attacker.example:9000", False),
    ("https://minio.platform:9000.evil.example", False),
])
def test_a_restricted_namespace_writes_to_the_platforms_endpoint_only(make_job, endpoint, allowed):
    settings = Settings(storage_prefixes={"team-a": "s3://shared/team-a/"},
                        default_s3_endpoint="http://minio.platform:9000")
    output = {"uri": "s3://shared/team-a/model", **({"endpoint": endpoint} if endpoint else {})}
    _, spec = make_job(output=output)
    decision = admission.check_storage("team-a", spec, settings)
    if allowed:
        assert decision is None
    else:
        assert decision.reason == "StorageNotAllowed"
        assert decision.message.startswith("output.endpoint:") and "http://minio.platform:9000" in decision.message
    # Without a default endpoint the only allowed value is none at all.
    _, spec = make_job(output=output)
    plain = admission.check_storage("team-a", spec, Settings(storage_prefixes={"team-a": "s3://shared/team-a/"}))
    assert (plain is None) is (endpoint is None)


READERS = Settings(storage_prefixes={"team-a": "s3://shared/team-a/"},
                   read_prefixes={"team-a": ["s3://datasets/public/"], "team-c": ["s3://datasets/team-c/"]})


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("model.source", "s3://datasets/public/minilm", True),
    ("model.source", "s3://shared/team-a/earlier-run/model", True),  # its own outputs
    ("model.source", "s3://shared/team-b/their-model", False),
    ("model.source", "s3://datasets/public/../team-b/model", False),
    ("model.source", "sentence-transformers/all-MiniLM-L6-v2", True),  # a hub id is not storage
    ("model.source", "/models/in-the-image", True),
    ("data.train", "s3://datasets/public/sst2/train.parquet", True),
    ("data.train", "s3://datasets/public%2f..%2fprivate/train.csv", False),
    ("data.validation", "s3://datasets/private/dev.csv", False),
    ("data.test", "s3://shared/team-b/test.csv", False),
])
def test_a_namespace_reads_only_under_its_read_prefixes(make_job, field, value, allowed):
    block, key = field.split(".")
    overrides = {"data": {"train": "s3://datasets/public/train.csv"}, "output": {"uri": "s3://shared/team-a/out"}}
    overrides.setdefault(block, {})[key] = value
    _, spec = make_job(**overrides)
    decision = admission.check_storage("team-a", spec, READERS)
    if allowed:
        assert decision is None
    else:
        assert decision.reason == "StorageNotAllowed"
        assert decision.message.startswith(f"{field}:")
        assert "s3://datasets/public/" in decision.message and "s3://shared/team-a/" in decision.message


def test_read_prefixes_without_a_storage_prefix_and_unlisted_namespaces(make_job):
    train = {"train": "s3://datasets/team-c/train.csv"}
    _, spec = make_job(model={"source": "s3://datasets/team-c/m"}, data=train, output={"uri": "s3://anywhere/out"})
    assert admission.check_storage("team-c", spec, READERS) is None
    _, spec = make_job(model={"source": "s3://datasets/public/m"}, data=train, output={"uri": "s3://anywhere/out"})
    decision = admission.check_storage("team-c", spec, READERS)
    assert decision is not None and decision.message.startswith("model.source:")
    assert admission.check_storage("team-z", spec, READERS) is None  # reads unrestricted


def test_bad_read_prefixes_are_refused_at_start():
    from pydantic import ValidationError

    for prefixes in (["/local/data"], ["s3://datasets/../x"]):
        with pytest.raises(ValidationError, match="read prefix"):
            Settings(read_prefixes={"team-a": prefixes})


def test_namespaces_without_a_prefix_write_anywhere(make_job):
    _, spec = make_job(output={"uri": "s3://anything/at/all"})
    assert admission.check_storage("team-b", spec, TENANT) is None


@pytest.mark.parametrize(("ref", "rejected"), [
    ({"name": "s3-creds"}, False),
    ({"name": "s3-creds", "namespace": "team-a"}, False),
    ({"name": "s3-creds", "namespace": "kube-system"}, True),
    ({"name": "kube-system/s3-creds"}, True),
])
def test_secret_ref_stays_in_the_namespace(ref, rejected):
    decision = admission.check_secret_ref("team-a", {"output": {"uri": "s3://x", "secretRef": ref}})
    assert (decision is not None) is rejected
    if rejected:
        assert decision.message.startswith("output.secretRef:")
        assert "team-a" in decision.message


# ------------------------------------------------------------------------ spec changes


def test_mutable_fields_may_change(make_job):
    old, _ = make_job()
    new, _ = make_job(scheduling={"suspend": True, "ttlSecondsAfterFinished": 10, "activeDeadlineSeconds": 99})
    assert forbidden_changes(old["spec"], new["spec"]) == []


@pytest.mark.parametrize(("overrides", "paths"), [
    ({"training": {"learningRate": 0.5}}, ["training.learningRate"]),
    ({"resources": {"workers": 3}}, ["resources.workers"]),
    ({"scheduling": {"backoffLimit": 4, "suspend": True}}, ["scheduling.backoffLimit"]),
    ({"output": {"uri": "s3://other"}, "model": {"source": "/m2"}}, ["model.source", "output.uri"]),
    ({"resources": {"tolerations": [{"operator": "Exists"}]}}, ["resources.tolerations"]),
])
def test_other_changes_are_listed(make_job, overrides, paths):
    old, _ = make_job()
    new, _ = make_job(**overrides)
    assert forbidden_changes(old["spec"], new["spec"]) == paths


def test_added_and_removed_keys_count(make_job):
    assert forbidden_changes({"a": 1}, {"a": 1, "b": {"c": 2}}) == ["b.c"]
    assert forbidden_changes({"a": 1}, {"a": 1, "b": 2}) == ["b"]
    assert forbidden_changes({"a": 1, "b": 2}, {"a": 1}) == ["b"]
    assert forbidden_changes({"a": None}, {}) == []


# A changed value for every mutable path; the table below fails for a path added to
# MUTABLE_SPEC_PATHS without one.
MUTABLE_VALUES = {
    ("scheduling", "suspend"): True,
    ("scheduling", "ttlSecondsAfterFinished"): 30,
    ("scheduling", "activeDeadlineSeconds"): 600,
}
# What the parent block of a mutable leaf looked like when the job was accepted.
PARENT_STATES = {
    "absent": None,
    "empty": {},
    "present": {"priorityClassName": "high", "backoffLimit": 1},
}


def _spec_with(parent: str, block: dict | None) -> dict:
    spec = copy.deepcopy(BASE_SPEC)
    if block is not None:
        spec[parent] = block
    return spec


def test_every_mutable_path_has_a_test_value():
    assert set(MUTABLE_VALUES) == set(MUTABLE_SPEC_PATHS)


@pytest.mark.parametrize("stored", ["as written", "with server defaults"])
@pytest.mark.parametrize("state", sorted(PARENT_STATES))
@pytest.mark.parametrize("path", MUTABLE_SPEC_PATHS, ids=".".join)
def test_a_mutable_leaf_may_change_whatever_its_parent_was(path, state, stored):
    parent, leaf = path
    before = PARENT_STATES[state]
    old = _spec_with(parent, copy.deepcopy(before))
    block = {**(before or {}), leaf: MUTABLE_VALUES[path]}
    if stored == "with server defaults":  # the API server fills in a new block's defaults
        block = {**SchedulingSpec().to_dict(), **block}
    new = _spec_with(parent, block)
    assert forbidden_changes(old, new) == []
    assert forbidden_changes(new, old) == []  # and back again


@pytest.mark.parametrize("state", sorted(PARENT_STATES))
@pytest.mark.parametrize("path", MUTABLE_SPEC_PATHS, ids=".".join)
def test_an_immutable_leaf_beside_a_mutable_one_is_named_alone(path, state):
    parent, leaf = path
    before = PARENT_STATES[state]
    old = _spec_with(parent, copy.deepcopy(before))
    new = _spec_with(parent, {**(before or {}), leaf: MUTABLE_VALUES[path], "backoffLimit": 5})
    assert forbidden_changes(old, new) == [f"{parent}.backoffLimit"]


def test_writing_a_default_out_is_no_change():
    old = _spec_with("scheduling", None)
    assert forbidden_changes(old, _spec_with("scheduling", {"backoffLimit": 0})) == []
    assert forbidden_changes(old, _spec_with("scheduling", {"backoffLimit": 0, "suspend": True})) == []


# ----------------------------------------------------------------------------- queue


def job(name, created, priority=0, holds=False, waiting=True, kueue=False):
    return JobSummary(name=name, created=created, priority=priority, holds_slot=holds,
                      waiting=waiting and not holds, kueue=kueue)


def test_fifo_within_a_priority():
    decisions = admit([job("c", "2026-01-03"), job("a", "2026-01-01"), job("b", "2026-01-02")], limit=1)
    assert decisions["a"].state == "admitted"
    assert (decisions["b"].state, decisions["b"].position) == ("queued", 1)
    assert (decisions["c"].state, decisions["c"].position) == ("queued", 2)


def test_priority_before_age():
    decisions = admit([job("old", "2026-01-01", priority=0), job("urgent", "2026-01-05", priority=1000),
                       job("mid", "2026-01-02", priority=10)], limit=2)
    assert decisions["urgent"].admitted and decisions["mid"].admitted
    assert decisions["old"].position == 1


def test_running_jobs_hold_their_slots():
    decisions = admit([job("running", "2026-01-09", holds=True), job("urgent", "2026-01-01", priority=99)], limit=1)
    assert decisions["running"].admitted
    assert decisions["urgent"].state == "queued" and decisions["urgent"].position == 1
    assert "position 1" in decisions["urgent"].message


def test_lowered_limit_admits_nothing_new_and_evicts_nothing():
    decisions = admit([job("r1", "1", holds=True), job("r2", "2", holds=True), job("w", "3")], limit=1)
    assert decisions["r1"].admitted and decisions["r2"].admitted
    assert decisions["w"].position == 1


def test_kueue_jobs_bypass_the_queue():
    decisions = admit([job("r", "1", holds=True), job("k", "2", kueue=True), job("w", "3")], limit=1)
    assert decisions["k"].admitted and decisions["k"].reason == "Kueue"
    assert decisions["w"].state == "queued"


def test_finished_and_suspended_jobs_get_no_decision():
    decisions = admit([job("done", "1", waiting=False), job("w", "2")], limit=1)
    assert "done" not in decisions and decisions["w"].admitted


def test_ties_break_by_name():
    decisions = admit([job("b", "same"), job("a", "same")], limit=1)
    assert decisions["a"].admitted and decisions["b"].position == 1
    assert admission.queue_depth(decisions) == 1


# ----------------------------------------------------------------- summaries of objects


@pytest.mark.parametrize(("status", "spec_overrides", "holds", "waiting"), [
    (None, {}, False, True),
    ({"phase": "Queued"}, {}, False, True),
    ({"phase": "Pending", "rayJobName": "x"}, {}, True, False),
    ({"phase": "Running", "rayJobName": "x"}, {}, True, False),
    ({"phase": "Succeeded", "rayJobName": "x"}, {}, False, False),
    ({"phase": "Failed"}, {}, False, False),
    ({"phase": "Running", "rayJobName": "x"}, {"scheduling": {"suspend": True}}, False, False),
])
def test_summarize(make_job, status, spec_overrides, holds, waiting):
    job_obj, _ = make_job(status=status, **spec_overrides)
    summary = admission.summarize(job_obj, TENANT)
    assert (summary.holds_slot, summary.waiting) == (holds, waiting)
    assert summary.name == "reviews" and summary.created == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(("class_name", "labels", "expected"), [
    ("high", {}, 1000),
    ("low", {"finetune.dev/priority": "50"}, -5),
    ("unknown", {}, 0),
    (None, {"finetune.dev/priority": "50"}, 50),
    (None, {"finetune.dev/priority": "lots"}, 0),
    (None, {}, 0),
])
def test_priority(make_job, class_name, labels, expected):
    scheduling = {"priorityClassName": class_name} if class_name else {}
    job_obj, _ = make_job(labels=labels, scheduling=scheduling)
    assert admission.job_priority(job_obj, TENANT) == expected


@pytest.mark.parametrize("uri", ["outputs", "/mnt/models/out", "file:///data/out", "./out"])
def test_a_local_output_is_refused_for_a_cluster_job(make_job, uri):
    """The Ray pods share no volume: an export could not read rank 0's checkpoints."""
    for namespace, settings in (("team-b", Settings()), ("team-a", Settings(storage_prefixes={"team-a": "/mnt/"}))):
        _, spec = make_job(output={"uri": uri})
        decision = admission.check_storage(namespace, spec, settings)
        if namespace == "team-a" and not uri.startswith("/mnt/"):
            continue  # refused by the prefix rule first
        assert decision is not None and decision.state == "rejected", (namespace, uri)
        assert decision.reason == "StorageNotAllowed"
        assert decision.message.startswith("output.uri:") and "s3://" in decision.message
    _, spec = make_job(output={"uri": "s3://models/out"})
    assert admission.check_storage("team-b", spec, Settings()) is None


LIMITED = Settings(job_limits={"team-a": {"max_workers": 4, "max_gpus": 8, "max_cpu": "17", "max_memory": "64Gi"},
                               "*": {"max_workers": 2}})


@pytest.mark.parametrize(("resources", "field"), [
    ({"workers": 4, "worker": {"cpu": "4", "memory": "15Gi", "gpu": 2}}, None),  # 17 CPU, 64 GiB, 8 GPUs: at the limit
    ({"workers": 5}, "resources.workers"),
    ({"workers": 3, "worker": {"gpu": 3}}, "resources.worker.gpu"),
    ({"workers": 4, "worker": {"cpu": "4500m"}}, "resources.worker.cpu"),
    ({"workers": 4, "worker": {"memory": "15Gi"}, "head": {"memory": "5Gi"}}, "resources.worker.memory"),
])
def test_a_job_asking_more_than_its_namespace_allows_fails_naming_the_field(make_job, resources, field):
    _, spec = make_job(resources=resources)
    decision = admission.check_resources("team-a", spec, LIMITED)
    if field is None:
        assert decision is None
    else:
        assert decision.state == "rejected" and decision.reason == "ResourcesNotAllowed"
        assert decision.message.startswith(f"{field}:") and "team-a" in decision.message


def test_job_limits_default_for_unlisted_namespaces_and_none_without_settings(make_job):
    _, spec = make_job(resources={"workers": 3})
    decision = admission.check_resources("team-z", spec, LIMITED)
    assert decision is not None and "(2)" in decision.message
    assert admission.check_resources("team-z", spec, Settings()) is None
