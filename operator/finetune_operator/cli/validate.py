"""`finetune validate FILE...`: check manifests offline, exactly as the operator will.

Prints one line per problem (`FILE: FIELD.PATH: message`) and exits 1 if any file has
one, so it fits in CI and pre-commit hooks. Imports nothing heavy.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check FineTuneJob manifests without a cluster",
        description="Check FineTuneJob manifests the way the operator and the CRD will. "
        "Multi-document files are checked document by document; FILE[N] names the "
        "document at index N (from 0).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML manifest(s); - reads standard input")
    parser.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: building the pydantic models costs ~0.15 s that other
    # subcommands (and `finetune --help`) should not pay.
    from finetune_operator.manifests import ManifestError, load_jobs, parse_jobs

    failed = False
    for name in args.files:
        try:
            jobs = parse_jobs(sys.stdin.read(), "<stdin>") if name == "-" else load_jobs(name)
        except ManifestError as err:
            failed = True
            for problem in err.problems:
                print(problem, file=sys.stdout)
            continue
        if not args.quiet:
            names = ", ".join(job.metadata.name for job in jobs)
            print(f"{'<stdin>' if name == '-' else name}: ok ({names})")
    return 1 if failed else 0
