"""What the chaos loops check at the end of a run, from what the recorder saw.

- duplicates: a job with more than one RayJob (or ConfigMap) uid ever labelled with
  its uid; names are deterministic, so a second one means a child was made again;
- missing ConfigMap: a job with a RayJob and no ConfigMap (its Ray pods could not
  start: the RayJob mounts it);
- lost: a created job that is gone, has no RayJob, or never reached a terminal phase;
- wrong phase: a terminal phase other than the one its RayJob ended in (the KubeRay
  player knows how each one ended);
- backward moves: in a job's phases ordered by resourceVersion, a step down the
  operator's phase order (Queued, Pending, Running/Suspended, then Succeeded/Failed;
  once terminal, any change), or a phase removed;
- over the limit: more unfinished RayJobs in a namespace than its concurrency limit;
- inconsistent: a finished job whose conditions disagree with its phase (its phase's
  condition not True, another phase's True) or that has no completionTime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from chaos.kuberay import KubeRayPlayer
from chaos.recorder import Recorder
from finetune_operator.api import TERMINAL_PHASES, Phase

# The operator's phase order: a job only ever moves up it (Suspended and Running share
# a rank, since a user may suspend and resume a running job).
PHASE_RANK: dict[str, int] = {Phase.QUEUED: 0, Phase.PENDING: 1, Phase.RUNNING: 2, Phase.SUSPENDED: 2,
                              Phase.SUCCEEDED: 3, Phase.FAILED: 3}


def backward_moves(sequence: list[tuple[int, Optional[str]]]) -> list[tuple[str, str]]:
    """The (from, to) steps of one job's phases, by resourceVersion, that go backwards."""
    moves: list[tuple[str, str]] = []
    previous: Optional[str] = None
    for _, phase in sorted(sequence):
        if phase == previous:
            continue
        if previous is not None and (phase is None or previous in TERMINAL_PHASES
                                     or PHASE_RANK[phase] < PHASE_RANK[previous]):
            moves.append((previous, str(phase)))
        previous = phase
    return moves


@dataclass
class Verdict:
    jobs: int = 0
    rayjobs: int = 0
    configmaps: int = 0
    duplicate_rayjobs: int = 0
    duplicate_configmaps: int = 0
    missing_configmaps: int = 0
    lost: int = 0
    wrong_phase: int = 0
    false_succeeded: int = 0
    backward: int = 0
    over_limit: int = 0
    inconsistent: int = 0
    versions_seen: int = 0
    watch_gaps: int = 0
    findings: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.duplicate_rayjobs or self.duplicate_configmaps or self.missing_configmaps or self.lost or self.wrong_phase
                    or self.backward or self.over_limit or self.watch_gaps or self.inconsistent)


PHASE_CONDITIONS = (Phase.QUEUED, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED, Phase.SUSPENDED)


def status_problem(status: dict) -> Optional[str]:
    """What is wrong with a finished job's status, if anything."""
    true = sorted(c["type"] for c in status.get("conditions") or []
                  if c.get("status") == "True" and c.get("type") in PHASE_CONDITIONS)
    if true != [status["phase"]]:
        return f"phase {status['phase']} with True conditions {true}"
    if not status.get("completionTime"):
        return f"phase {status['phase']} without completionTime"
    return None


def judge(created: dict[str, str], final: dict[str, dict], recorder: Recorder, player: KubeRayPlayer,
          limit: Optional[int]) -> Verdict:
    """`created`: job key (namespace/name) -> uid; `final`: the jobs as listed at the end."""
    verdict = Verdict(jobs=len(created), watch_gaps=recorder.gaps)
    with recorder.lock:
        for kind in ("rayjobs", "configmaps"):
            owned = recorder.by_owner[kind]
            for key, uid in created.items():
                extra = max(0, len(owned.get(uid, ())) - 1)
                if extra:
                    verdict.findings.append(f"{key}: {len(owned[uid])} {kind}")
                setattr(verdict, f"duplicate_{kind}", getattr(verdict, f"duplicate_{kind}") + extra)
            setattr(verdict, kind, sum(len(owned.get(uid, ())) for uid in created.values()))
        for key, uid in created.items():
            if recorder.by_owner["rayjobs"].get(uid) and not recorder.by_owner["configmaps"].get(uid):
                verdict.missing_configmaps += 1
                verdict.findings.append(f"{key}: a RayJob and no ConfigMap")
        phases = {key: list(seq) for key, seq in recorder.phases.items()}
    for key, uid in created.items():
        job = final.get(key)
        status = (job or {}).get("status") or {}
        namespace = key.split("/")[0]
        if job is None or job["metadata"]["uid"] != uid or not status.get("rayJobName") \
                or status.get("phase") not in TERMINAL_PHASES:
            verdict.lost += 1
            verdict.findings.append(f"{key}: lost (status {status.get('phase')!r}, "
                                    f"rayJobName {status.get('rayJobName')!r})")
            continue
        problem = status_problem(status)
        if problem:
            verdict.inconsistent += 1
            verdict.findings.append(f"{key}: {problem}")
        expected = player.expected(f"{namespace}/{status['rayJobName']}")
        if status["phase"] != expected:
            verdict.wrong_phase += 1
            verdict.false_succeeded += status["phase"] == Phase.SUCCEEDED
            verdict.findings.append(f"{key}: {status['phase']} but its RayJob ended {expected}")
    for key, sequence in phases.items():
        if key not in created:
            continue
        verdict.versions_seen += len(sequence)
        for move in backward_moves(sequence):
            verdict.backward += 1
            verdict.findings.append(f"{key}: phase moved back {move[0]} -> {move[1]} "
                                    f"(sequence {[p for _, p in sorted(sequence)]})")
    if limit is not None:
        for namespace, most in player.max_active.items():
            if most > limit:
                verdict.over_limit += most - limit
                verdict.findings.append(f"{namespace}: {most} unfinished RayJobs at once, limit {limit}")
    return verdict
