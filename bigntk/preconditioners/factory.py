"""``make_preconditioner``: the CG preconditioner of a kind for an operator's training points."""
from __future__ import annotations

from typing import Callable

import torch

from .. import backend
from ..operators.base import KernelOperator
from ..operators.cntk import periodic_grid
from .block_jacobi import block_jacobi_preconditioner
from .circulant import MaskedCirculantPreconditioner
from .nystrom import nystrom_preconditioner

__all__ = ["PRECONDITIONERS", "make_preconditioner"]

#: accepted kinds (``None`` / "none": the identity)
PRECONDITIONERS = ("auto", "circulant", "nystrom", "block_jacobi", None, "none")

F64 = backend.ACCUM_DTYPE
Apply = Callable[[torch.Tensor], torch.Tensor]


def _blocks_on_train(op: KernelOperator, train: torch.Tensor, blocks: list | None, block_size: int) -> list:
    """Index blocks over the operator's points, mapped to positions among the training points."""
    dev, n = op.device, train.numel()
    pos = torch.full((op.n,), -1, dtype=torch.int64, device=dev)
    pos[train] = torch.arange(n, device=dev)
    raw = ([torch.as_tensor(b, dtype=torch.int64, device=dev) for b in blocks] if blocks is not None
           else list(torch.arange(op.n, device=dev).split(block_size)))
    out = [b for b in (pb[pb >= 0] for pb in (pos[b] for b in raw)) if b.numel()]
    if sum(b.numel() for b in out) != n or torch.cat(out).unique().numel() != n:
        raise ValueError("blocks must partition the operator's points")
    return out


def make_preconditioner(kind: str | None, op: KernelOperator, train: torch.Tensor, ridge: float, *,
                        sketch: Callable[[torch.Tensor], torch.Tensor] | None = None, rank: int | str = "auto",
                        period: int | None = None, blocks: list | None = None, block_size: int = 2048,
                        seed: int = 0) -> tuple[str, Apply]:
    """(resolved kind, apply(R) → P⁻¹R) for (K + ridge·I) restricted to ``train`` (indices into ``op``).

    ``auto``: circulant where the operator's points live on a periodic image grid, else Nyström.
    ``sketch(V)`` = K[train, train] V serves the Nyström sketch (default: the operator itself).
    """
    if kind not in PRECONDITIONERS:
        raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {kind!r}")
    n = train.numel()
    grid = periodic_grid(op) if kind in ("auto", "circulant") else None
    if kind == "auto":
        kind = "circulant" if grid is not None else "nystrom"
    if kind in (None, "none"):
        return "none", lambda R: R.clone()
    if kind == "circulant":
        if grid is None:
            raise ValueError("preconditioner='circulant' needs a CNTK operator on an image grid")
        mu = ridge if ridge > 0 else 1e-6 * float(op.diag().to(F64).mean())
        return kind, MaskedCirculantPreconditioner(grid.restrict(train), mu, period=period)
    if kind == "nystrom":
        r = min(200, max(1, n // 4)) if rank == "auto" else int(rank)
        if sketch is None:
            sketch = lambda V: op.matmul(V, rows=train, cols=train)  # noqa: E731
        return kind, nystrom_preconditioner(sketch, n, r, ridge, seed=seed, device=op.device)[0]
    mu = ridge if ridge > 0 else 1e-10 * float(op.diag().to(F64).mean())
    tiles = _blocks_on_train(op, train, blocks, block_size)
    return kind, block_jacobi_preconditioner(lambda i, j: op.block(train[i], train[j]), tiles, mu)
