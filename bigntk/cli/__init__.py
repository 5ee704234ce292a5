"""Command-line interface: ``bigntk <command> ...`` (also ``python -m bigntk``).

Each subcommand lives in its own module under ``bigntk.cli`` exposing
``register(subparsers)``; the module's parser sets ``func`` to the handler.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from typing import Sequence

#: Subcommand modules, in help order.
COMMAND_MODULES = ("complete", "demo", "kernel", "inpaint", "cache", "cmap", "lowrank")


def build_parser() -> argparse.ArgumentParser:
    from ._common import Parser

    parser = Parser(
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


#: errors a user can cause (bad input, a path, the disk, memory): one line, exit status 2
USER_ERRORS = (ValueError, OSError, RuntimeError, MemoryError, KeyError, TypeError, FloatingPointError)


def describe(err: BaseException) -> str:
    """One line for an error: the message, the file it concerns, and a hint for disk errors."""
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        hint = {errno.ENOSPC: " (the disk is full: free space or choose another output path)",
                errno.EROFS: " (read-only file system: choose another output path)",
                errno.EACCES: " (permission denied: choose another path)"}.get(err.errno or -1, "")
        return f"{err.strerror}{where}{hint}"
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    plain = (ValueError, OSError, RuntimeError, FloatingPointError)
    return text if isinstance(err, plain) else f"{type(err).__name__}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure a user can cause ends in one line on stderr and exit status 2.

    ``BIGNTK_TRACEBACK=1`` shows the full traceback instead (for bug reports).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"bigntk {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the command line reports, it does not crash
        if os.environ.get("BIGNTK_TRACEBACK"):
            raise
        msg = describe(err)
        if not isinstance(err, USER_ERRORS):
            msg += " (unexpected: please report it, with the output of BIGNTK_TRACEBACK=1)"
        print(f"bigntk {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
