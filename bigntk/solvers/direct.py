"""Direct solver: Cholesky factorisation of (K + ridge·I), batched, with a float64 retry."""
from __future__ import annotations

import torch

from ..backend import ACCUM_DTYPE

__all__ = ["NotPositiveDefiniteError", "solve_direct"]


class NotPositiveDefiniteError(ValueError):
    """The kernel matrix of the observed set is not numerically positive definite."""


def _cholesky_or_none(K: torch.Tensor) -> torch.Tensor | None:
    """The Cholesky factor, or None when K is not numerically positive definite.

    LAPACK succeeds on some exactly singular matrices whose rounding leaves tiny positive pivots
    (duplicate prior columns in float32, depending on the CPU): a pivot² below n·eps·max diag(K) is
    rounding, not information, and counts as a failure too.
    """
    L, info = torch.linalg.cholesky_ex(K)
    if bool((info != 0).any()):
        return None
    n = K.shape[-1]
    floor = n * torch.finfo(K.dtype).eps * K.diagonal(dim1=-2, dim2=-1).amax(-1)
    pivots = L.diagonal(dim1=-2, dim2=-1) ** 2
    return None if bool((pivots.amin(-1) <= floor).any()) else L


def solve_direct(K: torch.Tensor, Y: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """Solve (K + ridge·I) α = Y by Cholesky.

    Parameters
    ----------
    K : (s, s) or (B, s, s) symmetric tensor; it may be overwritten (ridge added in place).
    Y : (s, r) or (B, s, r) right-hand sides (one column per output / row of the matrix).
    ridge : float ≥ 0, added to the diagonal unscaled.

    Returns
    -------
    α with the shape of Y, in K's dtype. A float32 factorisation that fails is retried in
    float64; if that fails too, :class:`NotPositiveDefiniteError` names the fixes.
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    if ridge:
        K.diagonal(dim1=-2, dim2=-1).add_(ridge)
    L = _cholesky_or_none(K)
    if L is None and K.dtype != ACCUM_DTYPE:
        L64 = _cholesky_or_none(K.to(ACCUM_DTYPE))
        if L64 is not None:
            return torch.cholesky_solve(Y.to(ACCUM_DTYPE), L64).to(K.dtype)
    if L is None:
        raise NotPositiveDefiniteError(
            "the kernel matrix of the observed entries is not positive definite (duplicate or "
            "parallel prior columns?); add a ridge (e.g. ridge=1e-6) or an identity nugget "
            "(e.g. nugget=1.5) to the prior"
        )
    return torch.cholesky_solve(Y.to(K.dtype), L)
