"""Randomized Nyström preconditioner (Frangella, Tropp & Udell, SIAM J. Matrix Anal. Appl. 2023).

A rank-r randomized Nyström approximation U Λ̂ Uᵀ of K (one product with r right-hand sides) gives
P⁻¹ = U (λ̂_r + μ)(Λ̂ + μ)⁻¹ Uᵀ + (I − UUᵀ), μ = ridge (or λ̂_r when ridge = 0). Works for any operator;
strong when K's spectrum decays fast (NTK over columns), weak for local kernels on large images.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import backend

__all__ = ["nystrom_preconditioner"]

F64 = backend.ACCUM_DTYPE


def nystrom_preconditioner(matmul, n: int, rank: int, mu: float, *, seed: int = 0, device=None):
    """Randomized Nyström preconditioner (Frangella et al. 2023, Alg. 2.1 + eq. 5.3).

    ``matmul(V)`` returns K @ V for V of shape (n, r). Returns (apply(R) -> P⁻¹R, eigenvalues).
    """
    g = torch.Generator().manual_seed(seed)
    Omega = torch.linalg.qr(torch.randn(n, rank, generator=g, dtype=F64).to(device))[0]
    Yk = matmul(Omega)
    nu = float(np.finfo(np.float64).eps * max(np.sqrt(n), 1.0) * torch.linalg.matrix_norm(Yk, ord=2))
    Yn = Yk + nu * Omega
    C = torch.linalg.cholesky(0.5 * (Omega.T @ Yn + (Omega.T @ Yn).T))
    B = torch.linalg.solve_triangular(C, Yn.T, upper=False).T  # Yn C⁻ᵀ
    U, S, _ = torch.linalg.svd(B, full_matrices=False)
    lam = (S * S - nu).clamp_min(0)
    mu_eff = float(mu) if mu > 0 else float(lam[-1].clamp_min(1e-300))
    scale = (lam[-1] + mu_eff) / (lam + mu_eff)

    def apply(R: torch.Tensor) -> torch.Tensor:
        UR = U.T @ R
        return R + U @ ((scale[:, None] - 1.0) * UR)

    return apply, lam
