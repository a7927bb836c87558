"""The table `make chaos` prints: one row per scenario, then what broke, if anything."""

from __future__ import annotations

import math

from chaos.scenarios import Result

COLUMNS = ("scenario", "seed", "iterations", "faults", "jobs", "RayJobs", "ConfigMaps", "dup RayJobs",
           "dup ConfigMaps", "no ConfigMap", "lost", "wrong phase", "backward", "over limit", "inconsistent",
           "false Succeeded",
           "max recovery s", "converge s")


def row(result: Result) -> list[str]:
    v = result.verdict
    converge = "never" if math.isinf(result.converge_s) else f"{result.converge_s:.1f}"
    return [result.scenario, str(result.seed), str(result.iterations), str(result.faults), str(v.jobs),
            str(v.rayjobs), str(v.configmaps), str(v.duplicate_rayjobs), str(v.duplicate_configmaps),
            str(v.missing_configmaps), str(v.lost), str(v.wrong_phase), str(v.backward), str(v.over_limit), str(v.inconsistent),
            str(v.false_succeeded),
            f"{result.recovery_max_s:.1f}", converge]


def print_results(results: list[Result]) -> None:
    rows = [list(COLUMNS), *(row(r) for r in results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    print()
    for index, cells in enumerate(rows):
        print(" | ".join(cell.ljust(width) for cell, width in zip(cells, widths)))
        if index == 0:
            print("-+-".join("-" * width for width in widths))
    for result in results:
        v = result.verdict
        print(f"\n{result.scenario}: {v.versions_seen} job versions recorded, {v.watch_gaps} watch gaps, "
              f"{result.crashed} exits the loop did not cause")
        if result.requests:
            print("  operator requests: " + ", ".join(f"{k}: {n}" for k, n in result.requests.items()))
        for finding in [*v.findings, *result.notes][:40]:
            print(f"  ! {finding}")
