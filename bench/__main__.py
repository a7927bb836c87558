"""`make bench`: run every `bench/bench_*.py` module's `main()` in turn.

Each benchmark prints its figures beside a baseline measured in the same run; the
machine is shared and noisy, so these are reports, not pass/fail timings. Name
benchmarks on the command line to run only those: `python -m bench operator_scale`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    from finetune_trainer.local_ray import use_loopback_for_embedded_ray

    use_loopback_for_embedded_ray()
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if argv:
        names = [n for n in names if n.removeprefix("bench_") in argv or n in argv]
    failures = 0
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as err:  # one broken benchmark must not hide the others
            failures += 1
            print(f"{name} FAILED: {type(err).__name__}: {err}", flush=True)
        print(f"--- {name}: {time.perf_counter() - started:.1f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
