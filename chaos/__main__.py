"""`make chaos` / `python -m chaos [SCENARIO...] [--seed N] [--jobs N] [--kills N]`.

Starts a real etcd and kube-apiserver (tests/support/real_kube.py; the binaries come
from tests/kube/build.sh, FINETUNE_KUBE_BIN_DIR), runs each scenario of
chaos.scenarios, and prints one table of counts. Exit status 1 when any invariant
was broken, with what broke it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from chaos.report import print_results
from chaos.scenarios import SCENARIOS, run_named


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"which scenarios (default: all): {', '.join(SCENARIOS)}")
    parser.add_argument("--seed", type=int, default=None, help="seed of every scenario (default: each its own)")
    parser.add_argument("--jobs", type=int, default=None, help="FineTuneJobs per scenario")
    parser.add_argument("--kills", type=int, default=None, help="SIGKILLs in the operator_kill loop")
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    from tests.support.real_kube import RealKube, kube_bin_dir, missing_binaries

    missing = missing_binaries()
    if missing:
        print(f"{', '.join(missing)} not built in {kube_bin_dir()}: run tests/kube/build.sh", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    server = RealKube(workdir / "server")
    (workdir / "server").mkdir()
    started = time.monotonic()
    server.start()
    print(f"real kube-apiserver + etcd up in {time.monotonic() - started:.1f} s; logs under {workdir}", flush=True)
    results = []
    try:
        for name in args.scenarios or list(SCENARIOS):
            print(f"\n=== {name} ===", flush=True)
            began = time.monotonic()
            sizes = {"seed": args.seed, "jobs": args.jobs}
            if name == "operator_kill":
                sizes["kills"] = args.kills
            scenario_dir = workdir / name
            scenario_dir.mkdir()
            results.append(run_named(name, server, scenario_dir, **sizes))
            print(f"--- {name}: {time.monotonic() - began:.0f} s", flush=True)
    finally:
        server.stop()
    print_results(results)
    return 0 if all(r.verdict.clean and not r.crashed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
