"""`finetune crd`: print the generated CustomResourceDefinition, or write it where the
repository and the Helm chart keep it (`--write`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune_operator.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "crd",
        help="print or write the FineTuneJob CRD",
        description="Print the FineTuneJob CustomResourceDefinition generated from the API models. "
        "With --write, store it in deploy/crds/ and charts/finetune-operator/crds/ instead.",
    )
    parser.add_argument("--write", action="store_true", help="write the CRD files instead of printing")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("."),
        help="repository root for --write (default: the current directory)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from finetune_operator.crd import CRD_PATHS, render_crd

    text = render_crd()
    if not args.write:
        print(text, end="")
        return 0
    root: Path = args.root
    if not (root / "deploy").is_dir() or not (root / "charts").is_dir():
        raise UserError(
            f"--write: {root.resolve()} is not the repository root (no deploy/ and charts/ folders); "
            "run from the repository root or pass --root"
        )
    for relative in CRD_PATHS:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    return 0
