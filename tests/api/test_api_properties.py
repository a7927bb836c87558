"""Property-based checks (hypothesis) of what every manifest and every name must
satisfy, beside the seeded mutants of test_api_fuzz:

- any JSON value put at any node of a valid manifest is accepted or refused in clear
  lines that name that node (or a field inside or around it), never with a traceback;
- every child name the operator derives from a job name is a valid Kubernetes name
  within its limit, and two job names never share a child.

`derandomize=True`: the examples are a fixed function of the test, so a CI run is
repeatable; `HYPOTHESIS_PROFILE=explore` draws new random examples on every run.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_cases import base_job
from fuzz_manifests import _nodes, dotted, write
from test_api_fuzz import related, reported_fields, validate
from tests.support.kube_names import is_dns1035_label, is_dns1123_label

settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BASE = base_job()
NODES = [parts for parts, _ in _nodes(BASE) if parts and parts[0] == "spec"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(node=st.sampled_from(NODES), value=json_values)
def test_any_value_at_any_field_is_accepted_or_refused_at_that_field(node, value):
    document = copy.deepcopy(BASE)
    parent = document
    for part in node[:-1]:
        parent = parent[part]
    parent[node[-1]] = value
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), "case", document)
        code, output = validate(path)
    assert "Traceback" not in output, output[-2000:]
    assert code in (0, 1), output[-500:]
    if code == 1:
        fields = reported_fields(path, output)
        assert fields and all(fields), output
        assert any(related(field, dotted(node)) for field in fields), (dotted(node), fields)


job_names = st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z", fullmatch=True)


@settings(max_examples=500)
@given(name=job_names)
def test_every_child_name_is_valid_within_its_limit(name):
    from finetune_operator import naming

    rayjob = naming.rayjob_name(name)
    assert is_dns1035_label(rayjob) and len(rayjob) <= naming.MAX_RAYJOB_NAME
    assert is_dns1123_label(naming.configmap_name(name))
    cleanup = naming.cleanup_job_name(name)
    assert is_dns1123_label(cleanup) and len(cleanup) <= naming.MAX_CLEANUP_JOB_NAME
    assert cleanup.endswith("-cleanup")


@settings(max_examples=500)
@given(a=job_names, b=job_names)
def test_two_job_names_never_share_a_child(a, b):
    from finetune_operator import naming

    if a == b:
        return
    for child in (naming.rayjob_name, naming.configmap_name, naming.cleanup_job_name):
        assert child(a) != child(b), (child.__name__, a, b)


@settings(max_examples=300)
@given(prefix=st.from_regex(r"\A[a-z][-a-z0-9]{59}\Z", fullmatch=True),
       tails=st.lists(st.from_regex(r"\A[a-z0-9]{1,20}\Z", fullmatch=True), min_size=2, max_size=8, unique=True))
def test_long_names_with_a_shared_prefix_keep_distinct_children(prefix, tails):
    from finetune_operator import naming

    names = [f"{prefix}{tail}" for tail in tails]
    for child in (naming.rayjob_name, naming.configmap_name, naming.cleanup_job_name):
        assert len({child(name) for name in names}) == len(names), child.__name__
