"""Solver policy: the solver names, the direct/iterative thresholds and the one result type.

``solver="auto"`` chooses, for an operator over n training points:

* ``direct`` (Cholesky of the dense K + ridge·I) when n ≤ the threshold and the dense matrix fits in
  memory. The threshold depends on how cheaply an iteration converges: for tiled kernels (NTK over
  columns) a direct solve beats iterating up to :data:`DIRECT_MAX` = 30 000 points; for *image-grid*
  operators (the CNTK: a fast polyphase product, or tiles with the masked circulant preconditioner) CG
  reaches the direct solution in a few products, so direct pays off only up to
  :data:`DIRECT_MAX_FAST` = 4 000 points;
* ``cg`` above it for image-grid operators (deflated, preconditioned CG, ``bigntk.solvers.cg``);
* ``eigenpro`` above it otherwise (EigenPro 2, streamed, ``bigntk.solvers.eigenpro``).

Every solver returns a :class:`SolveResult`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import backend
from ..operators.base import KernelOperator
from ..operators.cntk import periodic_grid

__all__ = ["SOLVERS", "DIRECT_MAX", "DIRECT_MAX_FAST", "SolveResult", "ConvergenceWarning", "choose_solver",
           "direct_bytes", "check_direct_fits"]

#: solver names accepted everywhere a solver is chosen
SOLVERS = ("auto", "direct", "eigenpro", "cg")
#: ``auto`` solves directly up to this many points on tiled operators
DIRECT_MAX = 30_000
#: ``auto`` solves directly up to this many points on fast-product operators (CG above)
DIRECT_MAX_FAST = 4_000


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped before reaching the tolerance it was asked for."""


@dataclass
class SolveResult:
    """Outcome of a solve of (K + ridge·I) α = Y.

    alpha : (n, l) float64 tensor, weights over all n points of the operator (zero on held-out points).
    solver : "direct", "eigenpro" or "cg".
    history : per-epoch (EigenPro) or per-iteration (CG) dicts; empty for direct.
    iterations : epochs (EigenPro) or iterations (CG); 0 for direct.
    stopped : why the iteration ended ("direct" for direct).
    converged : True when a requested tolerance was met (direct: always), False when it was not,
        None when no tolerance was asked for (a fixed number of EigenPro epochs).
    params : the solver's resolved parameters (EigenPro: q, batch, step, spectrum figures).
    train_index, val_index : (n_train,), (n_val,) positions of training / held-out points.
    """

    alpha: torch.Tensor
    solver: str = ""
    history: list = field(default_factory=list)
    iterations: int = 0
    stopped: str = ""
    converged: bool | None = None
    params: dict = field(default_factory=dict)
    train_index: torch.Tensor | None = None
    val_index: torch.Tensor | None = None


def direct_bytes(n: int, dtype: torch.dtype = backend.ACCUM_DTYPE) -> int:
    """Peak bytes of a direct solve over n points: the dense matrix and its Cholesky factor."""
    return 2 * n * n * (torch.finfo(dtype).bits // 8)


def check_direct_fits(n: int, device: torch.device, dtype: torch.dtype = backend.ACCUM_DTYPE,
                      count: int = 1) -> None:
    """Refuse, before allocating, ``count`` direct solves over n points that cannot fit in free memory."""
    need, free = count * direct_bytes(n, dtype), backend.free_memory_bytes(device)
    if need > free:
        raise MemoryError(f"a direct solve over {n} points needs about {need / 1e9:.1f} GB "
                          f"({free / 1e9:.1f} GB free); use solver='eigenpro' or 'cg' (streamed)")


def choose_solver(op: KernelOperator, solver: str = "auto", direct_max: int | None = None) -> str:
    """Resolve ``solver`` for ``op`` (module docstring); validates the name."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
    if solver != "auto":
        return solver
    grid = op.fast_matmul or periodic_grid(op) is not None
    limit = direct_max if direct_max is not None else (DIRECT_MAX_FAST if grid else DIRECT_MAX)
    fits = direct_bytes(op.n, op.dtype) <= backend.free_memory_bytes(op.device) // 2
    if op.n <= limit and fits:
        return "direct"
    return "cg" if grid else "eigenpro"


def warn_not_converged(solver: str, stopped: str, tol: float) -> None:
    warnings.warn(f"{solver} did not reach tol={tol:g} ({stopped}); raise the iteration limit, add a ridge "
                  "or loosen tol", ConvergenceWarning, stacklevel=3)


def resolve_options(cls: type, options: dict[str, Any], solver: str) -> dict[str, Any]:
    """Check option names against the solver class's constructor: one clear error for a misspelling."""
    import inspect

    known = [p for p in inspect.signature(cls).parameters if p not in ("self", "ridge")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for solver {solver!r}; it takes {known}")
    return options
