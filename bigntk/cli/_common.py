"""Argument helpers shared by the subcommands."""
from __future__ import annotations

import argparse
from typing import Any

#: choices the parsers offer without importing the library (tests/test_cli_basics.py checks they agree
#: with ``bigntk.solvers.policy.SOLVERS`` and ``bigntk.apps.inpaint.geometry.BOUNDARIES``)
SOLVER_CHOICES = ("auto", "direct", "eigenpro", "cg")
BOUNDARY_CHOICES = ("open", "periodic")


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already names it or there is none
    (None, a flag's False); a one-paragraph description is wrapped, a multi-line one (usage blocks)
    kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text.lower():
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text  # a required positional has no default
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class Parser(argparse.ArgumentParser):
    """The CLI's parser class (sub-parsers inherit it): :class:`HelpFormatter` by default."""

    def __init__(self, *args: Any, formatter_class: type = HelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def _budget(text: str) -> int:
    from ..backend import parse_bytes

    try:
        value = parse_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if value < 10**6:
        raise argparse.ArgumentTypeError(f"memory budget {text!r} is below 1 MB")
    return value


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"threads must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"threads must be a positive integer, got {text!r}")
    return value


def add_compute_args(parser: argparse.ArgumentParser) -> None:
    """--device, --dtype, --memory-budget, --threads: resolved by :mod:`bigntk.backend`."""
    g = parser.add_argument_group("compute")
    g.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N (default: $BIGNTK_DEVICE, else CUDA when available, else cpu)")
    g.add_argument("--dtype", default=None, choices=["float32", "float64"],
                   help="working precision (default: $BIGNTK_DTYPE, else float32)")
    g.add_argument("--memory-budget", type=_budget, default=None, metavar="SIZE",
                   help="memory one streamed computation may hold, e.g. 4GB or 512MiB (default: "
                        "$BIGNTK_MEMORY_BUDGET, else a quarter of free memory, at most 2 GiB on the CPU)")
    add_threads_arg(g)


def add_threads_arg(parser: argparse.ArgumentParser | Any) -> None:
    """--threads alone (commands that compute with numpy / scipy but not torch)."""
    parser.add_argument("--threads", type=_threads, default=None,
                        help="CPU threads for torch and the BLAS of numpy / scipy (default: $BIGNTK_THREADS, "
                             "else the cores not busy with other work)")


def apply_threads(args: argparse.Namespace) -> None:
    from ..backend import set_threads

    set_threads(getattr(args, "threads", None))


def compute_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Apply --threads and return device / dtype / memory_budget for the library call."""
    apply_threads(args)
    return {"device": args.device, "dtype": args.dtype, "memory_budget": getattr(args, "memory_budget", None)}


def add_cluster_args(parser: argparse.ArgumentParser) -> None:
    """--workers / --scheduler: run the kernel products on dask.distributed (``bigntk.distributed``)."""
    g = parser.add_argument_group("scale-out (dask.distributed)")
    g.add_argument("--workers", type=_threads, default=None, metavar="N",
                   help="start a local cluster of N worker processes, 1 thread each (one worker per GPU "
                        "with dask-cuda when CUDA is available); default: in-process")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="join an existing dask cluster, e.g. tcp://10.0.0.1:8786 (its workers need bigntk)")


def cluster_from_args(args: argparse.Namespace):
    """Context manager yielding a dask Client for --workers / --scheduler (None when neither is given)."""
    if getattr(args, "workers", None) is None and getattr(args, "scheduler", None) is None:
        import contextlib

        return contextlib.nullcontext(None)
    if args.workers is not None and args.scheduler is not None:
        raise ValueError("give --workers or --scheduler, not both")
    from ..distributed import cluster

    return cluster(workers=args.workers, scheduler=args.scheduler, quiet=getattr(args, "quiet", False))


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """Alias of :func:`add_compute_args` for the commands that predate it."""
    add_compute_args(parser)


def parse_size(text: str) -> int:
    """A size such as 20GB or 512MiB (argparse type)."""
    from ..backend import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).replace("memory budget", "size")) from None


def add_ntk_args(parser: argparse.ArgumentParser) -> None:
    """Architecture and regularisation of the fully connected NTK."""
    parser.add_argument("--depth", type=int, default=1, help="number of hidden layers (default 1)")
    parser.add_argument("--activation", default="relu", choices=["relu", "leaky_relu"],
                        help="activation of the hidden layers (default relu)")
    parser.add_argument("--negative-slope", type=float, default=0.01, help="LeakyReLU slope (default 0.01)")
    parser.add_argument("--ridge", type=float, default=0.0, help="ridge added to the kernel diagonal, unscaled (default 0)")
    parser.add_argument("--nugget", type=float, default=0.0, help="identity nugget τ of the prior (default 0; the paper uses 1.5)")
    parser.add_argument("--solver", default="auto", choices=SOLVER_CHOICES,
                        help="auto: direct up to 30 000 observed columns, EigenPro above (default auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
