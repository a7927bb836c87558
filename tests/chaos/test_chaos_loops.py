"""Short, seeded versions of `make chaos` (chaos/scenarios.py) against the session's
real kube-apiserver and etcd (marker `kube`; skipped, saying how to build them, when
the binaries are missing). Each asserts the invariants `make chaos` reports: no
duplicate RayJob or ConfigMap, no lost job, every status what its RayJob says, no
phase moving backwards, no namespace over its concurrency limit.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from chaos.scenarios import Result, api_faults, operator_kill, two_replicas
from tests.support.real_kube import RealKube
from tests.support.real_kube_handle import RealKubeHandle

pytestmark = [pytest.mark.slow, pytest.mark.kube]


def _empty_namespaces(server: RealKube, result: Result, tmp_path: Path) -> None:
    """Leave nothing for later tests that watch every namespace."""
    handle = RealKubeHandle(server, tmp_path / "cleanup-kubeconfig")
    handle.namespaces = set(result.namespaces)
    handle.reset()


def _assert_clean(result: Result, faults: int, jobs: int) -> None:
    verdict = result.verdict
    assert result.crashed == 0, result.notes
    assert result.faults >= faults
    assert verdict.findings == [] and verdict.clean, "\n".join(verdict.findings)
    assert verdict.jobs == jobs and verdict.rayjobs == jobs and verdict.configmaps == jobs
    assert not math.isinf(result.converge_s), "the jobs did not converge"
    # Every job's versions were seen: at least created, admitted, and finished.
    assert verdict.versions_seen >= 3 * jobs


def test_operator_sigkill_loop_loses_and_duplicates_nothing(real_kube: RealKube, tmp_path: Path) -> None:
    result = operator_kill(real_kube, tmp_path, seed=11, jobs=10, kills=5, converge_timeout=120)
    try:
        _assert_clean(result, faults=5, jobs=10)
    finally:
        _empty_namespaces(real_kube, result, tmp_path)


def test_two_replicas_without_peering_make_no_duplicates(real_kube: RealKube, tmp_path: Path) -> None:
    result = two_replicas(real_kube, tmp_path, seed=12, jobs=8, restarts=2, converge_timeout=120)
    try:
        _assert_clean(result, faults=2, jobs=8)
    finally:
        _empty_namespaces(real_kube, result, tmp_path)


def test_api_faults_through_the_proxy_converge(real_kube: RealKube, tmp_path: Path) -> None:
    result = api_faults(real_kube, tmp_path, seed=13, jobs=6, share=0.15, converge_timeout=180)
    try:
        # 15% of a few hundred requests: the proxy did inject faults, and the run still converged.
        _assert_clean(result, faults=10, jobs=6)
    finally:
        _empty_namespaces(real_kube, result, tmp_path)
