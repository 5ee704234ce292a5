"""Block-Jacobi preconditioner: exact Cholesky solves with diagonal blocks (K_BB + μI).

For local kernels, blocks of spatially contiguous pixels (``bigntk.operators.cntk.tile_blocks``)
capture near-field coupling; the set-up costs Σ|B|³ and the blocks' factors are held in memory.
"""
from __future__ import annotations

import torch

from .. import backend

__all__ = ["block_jacobi_preconditioner"]

F64 = backend.ACCUM_DTYPE


def block_jacobi_preconditioner(block, blocks: list, mu: float):
    """Block-Jacobi preconditioner: R ↦ (K_BB + μI)⁻¹ R_B on every index block B (blocks partition 0..n−1).

    ``block(idx, idx)`` returns the tile K[idx, idx]. Returns apply(R) -> P⁻¹R (float64).
    """
    factors = []
    for b in blocks:
        Kb = block(b, b).to(F64)
        Kb.diagonal().add_(mu)
        L, info = torch.linalg.cholesky_ex(Kb)
        if int(info):
            raise ValueError(f"block of size {len(b)} is not positive definite with mu={mu:.3g}; use a ridge")
        factors.append(L)

    def apply(R: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(R)
        for b, L in zip(blocks, factors):
            out[b] = torch.cholesky_solve(R[b], L)
        return out

    return apply
