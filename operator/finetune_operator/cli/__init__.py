"""The `finetune` command.

Each subcommand lives in its own module of this package and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`. Modules
import their heavy dependencies (torch, ray, kopf) inside `func`, so `finetune
validate` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from finetune_operator import __version__
from finetune_operator.errors import UserError

# Subcommand modules, in the order `finetune --help` lists them. A module that is
# not there yet is skipped, so the CLI works while the project grows.
SUBCOMMAND_MODULES = (
    "validate",
    "crd",
    "run",
    "operator",
    "jobs",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune",
        description="Fine-tune Hugging Face models on Ray, locally or on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"finetune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"finetune_operator.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"finetune_operator.cli.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
