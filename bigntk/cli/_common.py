"""Argument helpers shared by the subcommands."""
from __future__ import annotations

import argparse
from typing import Any


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """--device / --dtype, resolved by :mod:`bigntk.backend`."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: $BIGNTK_DEVICE, else CUDA if available)")
    parser.add_argument("--dtype", default=None, choices=["float32", "float64"], help="working dtype (default float32)")


def parse_size(text: str) -> int:
    from ..backend import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _threads(text: str) -> int:
    try:
        t = int(text)
    except ValueError:
        t = 0
    if t < 1:
        raise argparse.ArgumentTypeError(f"threads must be a positive integer, got {text!r}")
    return t


def add_compute_args(parser: argparse.ArgumentParser) -> None:
    """--device, --dtype, --memory-budget, --threads: the compute settings of :mod:`bigntk.backend`."""
    add_device_args(parser)
    parser.add_argument("--memory-budget", type=parse_size, default=None, metavar="SIZE",
                        help="bytes one streamed computation may hold, e.g. 4GB or 512MiB (default: "
                             "$BIGNTK_MEMORY_BUDGET, else a quarter of free memory, at most 2 GiB on the CPU)")
    parser.add_argument("--threads", type=_threads, default=None,
                        help="torch CPU threads (default: $BIGNTK_THREADS, else the cores not busy)")


def compute_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``{"device", "dtype", "memory_budget"}`` from :func:`add_compute_args`'s options; applies --threads."""
    from ..backend import set_threads

    set_threads(args.threads)
    return {"device": args.device, "dtype": args.dtype, "memory_budget": args.memory_budget}


def add_ntk_args(parser: argparse.ArgumentParser) -> None:
    """Architecture and regularisation of the fully connected NTK."""
    parser.add_argument("--depth", type=int, default=1, help="number of hidden layers (default 1)")
    parser.add_argument("--activation", default="relu", choices=["relu", "leaky_relu"])
    parser.add_argument("--negative-slope", type=float, default=0.01, help="LeakyReLU slope")
    parser.add_argument("--ridge", type=float, default=0.0, help="ridge added to the kernel diagonal (unscaled)")
    parser.add_argument("--nugget", type=float, default=0.0, help="identity nugget τ of the prior (paper: 1.5)")
    parser.add_argument("--solver", default="auto", help="auto | direct | eigenpro | cg")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
