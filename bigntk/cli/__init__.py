"""Command-line interface: ``bigntk <command> ...`` (also ``python -m bigntk``).

Each subcommand lives in its own module under ``bigntk.cli`` exposing
``register(subparsers)``; the module's parser sets ``func`` to the handler.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

#: Subcommand modules, in help order.
COMMAND_MODULES = ("complete", "demo", "kernel", "inpaint", "cache", "cmap", "lowrank")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bigntk",
        description="Matrix completion with infinite-width neural networks (NTK / CNTK).",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"bigntk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"bigntk {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
