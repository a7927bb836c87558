"""The chaos loops' checks (chaos/invariants.py) on recorded histories made by hand:
each broken invariant is counted, and a clean history counts nothing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

from chaos.invariants import backward_moves, judge
from chaos.recorder import Recorder


def test_a_forward_sequence_has_no_backward_move() -> None:
    sequence = [(1, None), (2, "Queued"), (3, "Pending"), (5, "Running"), (9, "Succeeded"), (12, "Succeeded")]
    assert backward_moves(sequence) == []


def test_backward_moves_are_found_in_resource_version_order() -> None:
    # Listed out of order on purpose: the check sorts by resourceVersion.
    sequence = [(7, "Pending"), (3, "Running"), (2, "Pending"), (9, "Running")]
    assert backward_moves(sequence) == [("Running", "Pending")]


def test_any_change_after_a_terminal_phase_is_backward() -> None:
    assert backward_moves([(1, "Running"), (2, "Failed"), (3, "Succeeded")]) == [("Failed", "Succeeded")]
    assert backward_moves([(1, "Pending"), (2, None)]) == [("Pending", "None")]


def _recorder(phases: dict, rayjobs: dict, configmaps: Optional[dict] = None) -> Recorder:
    recorder = Recorder(api=None, namespaces={"ns"})  # never started: filled by hand
    recorder.phases.update(phases)
    recorder.by_owner["rayjobs"].update(rayjobs)
    recorder.by_owner["configmaps"].update(configmaps if configmaps is not None
                                           else {uid: {f"cm-{uid}"} for uid in rayjobs})
    return recorder


def _job(name: str, uid: str, phase: str, conditions: tuple[str, ...] = ()) -> dict:
    true = [{"type": c, "status": "True"} for c in (*conditions, phase, "Accepted")]
    return {"metadata": {"name": name, "uid": uid},
            "status": {"phase": phase, "rayJobName": name, "completionTime": "2026-01-01T00:00:00Z",
                       "conditions": [*true, {"type": "Running", "status": "False"}]}}


def test_judge_counts_duplicates_lost_wrong_phases_and_the_limit() -> None:
    created = {"ns/a": "uid-a", "ns/b": "uid-b", "ns/c": "uid-c"}
    final = {"ns/a": _job("a", "uid-a", "Succeeded"), "ns/b": _job("b", "uid-b", "Succeeded", ("Running",))}
    recorder = _recorder({"ns/a": [(1, "Pending"), (2, "Running"), (3, "Pending"), (4, "Succeeded")]},
                         {"uid-a": {"r1", "r2"}, "uid-b": {"r3"}})
    ended = {"ns/a": "Succeeded", "ns/b": "Failed"}
    player = SimpleNamespace(expected=ended.get, max_active={"ns": 4})
    verdict = judge(created, final, recorder, player, limit=3)
    assert (verdict.duplicate_rayjobs, verdict.duplicate_configmaps) == (1, 0)
    assert verdict.lost == 1  # c is gone
    assert verdict.wrong_phase == verdict.false_succeeded == 1  # b says Succeeded, its RayJob failed
    assert verdict.backward == 1
    assert verdict.over_limit == 1
    assert verdict.inconsistent == 1  # b is Succeeded and still Running
    assert not verdict.clean


def test_judge_passes_a_clean_history() -> None:
    created = {"ns/a": "uid-a"}
    recorder = _recorder({"ns/a": [(1, None), (2, "Pending"), (3, "Running"), (4, "Failed")]}, {"uid-a": {"r1"}})
    player = SimpleNamespace(expected={"ns/a": "Failed"}.get, max_active={"ns": 1})
    verdict = judge(created, {"ns/a": _job("a", "uid-a", "Failed")}, recorder, player, limit=3)
    assert verdict.clean and verdict.findings == []
    assert (verdict.jobs, verdict.rayjobs, verdict.configmaps, verdict.versions_seen) == (1, 1, 1, 4)


def test_judge_counts_a_rayjob_without_its_configmap() -> None:
    created = {"ns/a": "uid-a", "ns/b": "uid-b"}
    final = {"ns/a": _job("a", "uid-a", "Failed"), "ns/b": _job("b", "uid-b", "Failed")}
    recorder = _recorder({}, {"uid-a": {"r1"}, "uid-b": {"r2"}}, configmaps={"uid-b": {"c2"}})
    player = SimpleNamespace(expected=lambda key: "Failed", max_active={})
    verdict = judge(created, final, recorder, player, limit=None)
    assert verdict.missing_configmaps == 1 and verdict.findings == ["ns/a: a RayJob and no ConfigMap"]
    assert not verdict.clean
