"""Preconditioned, deflated conjugate gradient in float64 for operators with a fast matvec.

Solves (K + ridge·I) α = Y column by column (all columns advance together, one multi-RHS product per
iteration). Meant for operators whose ``matmul`` is cheap (the polyphase CNTK operator: one GEMM per
product), where forming kernel rows is not. Conditioning facts that shape it (a CNTK prototype at 320²,
80% observed): the top eigenvector is an almost-constant mode with λ ≈ 10⁴, λ₂/λ_min ~ 10⁸, and an
exact null space. Hence:

* float64 everywhere (iterates, residuals, scalars); the operator's tiles may be float32 only if
  accuracy allows — a float32 matvec makes CG diverge on such problems, use ``dtype="float64"``;
* **deflation** of the constant mode, exactly: deflated CG (Saad, Yeung, Erhel & Guyomarc'h, SIAM J.
  Sci. Comput. 2000) with W = [1/√n] — the start x₀ solves the W-Galerkin problem and every search
  direction is kept K-orthogonal to W;
* preconditioners (``bigntk.preconditioners``): ``"circulant"`` for CNTK operators on an image grid —
  the exact inverse of the masked block-circulant surrogate (the kernel averaged over shifts by
  multiples of Q, solved with FFTs and a Schur complement over the unobserved pixels); ``"nystrom"``
  (randomized Nyström, Frangella, Tropp & Udell 2023) for any operator; ``"block_jacobi"`` (exact
  solves with diagonal blocks, e.g. spatial tiles). ``"auto"``: circulant where the operator has a
  periodic grid, else Nyström. The circulant preconditioner is applied with an inner iteration, so
  β uses the flexible (Polak–Ribière) formula (Notay, SIAM J. Sci. Comput. 2000), which equals the
  classic one for a fixed preconditioner;
* early stopping on held-out points (the regulariser when ridge = 0): the held-out predictions come from
  the same product (rows = train ∪ held-out), so they cost nothing extra.

A run that ends at ``max_iter`` above ``tol`` says so: ``SolveResult.converged`` is False and a
:class:`~bigntk.solvers.policy.ConvergenceWarning` is issued.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .. import backend
from ..operators.base import KernelOperator
from ..progress import bar
from ..preconditioners import PRECONDITIONERS, make_preconditioner
from .policy import SolveResult, warn_not_converged

__all__ = ["ConjugateGradient", "PRECONDITIONERS"]

F64 = backend.ACCUM_DTYPE


@dataclass
class _Deflation:
    """Deflated CG with W = [1/√n] (Saad et al. 2000): the Galerkin start and the projection of directions."""

    W: torch.Tensor  # (n, 1)
    AW: torch.Tensor  # (n + n_val, 1): A[rows] W
    WAW_inv: float

    @classmethod
    def build(cls, A_full: Callable, n: int, device) -> "_Deflation":
        W = torch.full((n, 1), 1.0 / np.sqrt(n), dtype=F64, device=device)
        AW = A_full(W)
        return cls(W, AW, 1.0 / float((W * AW[:n]).sum()))

    def start(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x₀ solving the W-Galerkin problem, A[rows] x₀)."""
        c = self.WAW_inv * (self.W.T @ b)
        return self.W @ c, self.AW @ c

    def __call__(self, Z: torch.Tensor) -> torch.Tensor:
        n = self.W.shape[0]
        return Z - self.W @ (self.WAW_inv * (self.AW[:n].T @ Z))


class ConjugateGradient:
    """Deflated, preconditioned CG for (K + ridge·I) α = Y.

    Parameters
    ----------
    max_iter : int — iteration cap.
    tol : float — stop when every column's ‖r‖/‖y‖ < tol.
    ridge : float ≥ 0.
    preconditioner : "auto" (default) | "circulant" | "nystrom" | "block_jacobi" | None (module docstring).
    period : circulant averaging period Q (default ``bigntk.preconditioners.default_period``).
    rank : Nyström rank (auto: min(200, n // 4)).
    blocks : for "block_jacobi", a list of index arrays over the operator's points (partitioning them);
        default: contiguous chunks of ``block_size`` points.  block_size : int (default 2048).
    deflate_constant : bool — deflate the constant mode exactly.
    val_fraction, patience : early stopping on held-out points (checked every iteration).
    seed : int; progress : bool (tqdm); callback : callable(iteration, x_train), optional (monitoring).
    """

    def __init__(self, max_iter: int = 500, *, tol: float = 1e-8, ridge: float = 0.0,
                 preconditioner: str | None = "auto", rank: int | str = "auto", deflate_constant: bool = True,
                 period: int | None = None,
                 blocks: list | None = None, block_size: int = 2048,
                 val_fraction: float = 0.0, patience: int = 20, seed: int = 0, progress: bool = True,
                 callback=None):
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        if not (np.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be a finite number > 0, got {tol}")
        if preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}")
        if not 0.0 <= val_fraction < 0.5:
            raise ValueError(f"val_fraction must lie in [0, 0.5), got {val_fraction}")
        self.max_iter, self.tol, self.ridge = int(max_iter), float(tol), float(ridge)
        self.preconditioner = None if preconditioner == "none" else preconditioner
        self.rank, self.deflate_constant = rank, bool(deflate_constant)
        self.val_fraction, self.patience, self.seed, self.progress = float(val_fraction), int(patience), int(seed), progress
        self.callback = callback
        self.blocks, self.block_size = blocks, int(block_size)
        self.period = period
        self.preconditioner_ = None  #: the preconditioner of the last fit (e.g. its inner_iterations)

    def _split(self, n_all: int, dev) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, held-out) point indices, seeded."""
        if self.val_fraction <= 0:
            return torch.arange(n_all, device=dev), torch.arange(0, device=dev)
        g = torch.Generator().manual_seed(self.seed + 7919)
        perm = torch.randperm(n_all, generator=g)
        nv = max(1, int(round(self.val_fraction * n_all)))
        return perm[nv:].sort().values.to(dev), perm[:nv].sort().values.to(dev)

    def fit(self, operator: KernelOperator, Y: Any, *, sketch_operator: KernelOperator | None = None) -> SolveResult:
        """Solve for Y of shape (n, l) (or (n,)); returns a :class:`~bigntk.solvers.SolveResult`.

        ``sketch_operator`` (optional, same kernel and points as ``operator``, e.g. a float32 copy of a
        float64 operator) serves only the Nyström sketch K·Ω of the preconditioner: the preconditioner
        need not be exact, and the rank-r product is the dominant set-up cost (~1.7× faster in float32
        for the polyphase CNTK operator). CG's own products are always float64: a float32 ``operator`` is
        used as it is for the sketch and in float64 (``operator.with_dtype``) for the iteration — with
        float32 products the deflated iteration loses the symmetry it relies on and diverges.
        """
        if operator.dtype != F64 and sketch_operator is None:
            sketch_operator = operator
        op, dev = operator.with_dtype(F64), operator.device
        if sketch_operator is not None and sketch_operator.n != op.n:
            raise ValueError(f"sketch_operator has n={sketch_operator.n}, operator has n={op.n}")
        Yt = backend.to_tensor(Y, device=dev, dtype=F64)
        Yt = Yt[:, None] if Yt.ndim == 1 else Yt
        if Yt.ndim != 2 or Yt.shape[0] != op.n:
            raise ValueError(f"Y must have shape (n={op.n}, l), got {tuple(Yt.shape)}")
        if not bool(torch.isfinite(Yt).all()):
            raise ValueError("Y contains NaN or inf")
        train, val = self._split(op.n, dev)
        rows, ridge = torch.cat([train, val]), self.ridge

        def A_full(V: torch.Tensor) -> torch.Tensor:  # (K + ridge I)[train ∪ val, train] @ V
            out = op.matmul(V, rows=rows, cols=train)
            out[: train.numel()] += ridge * V
            return out

        sketch = None if sketch_operator is None else (
            lambda V: sketch_operator.matmul(V, rows=train, cols=train).to(F64))
        _, apply_P = make_preconditioner(self.preconditioner, op, train, ridge, sketch=sketch, rank=self.rank,
                                         period=self.period, blocks=self.blocks, block_size=self.block_size,
                                         seed=self.seed)
        self.preconditioner_ = apply_P
        x, history, it, stopped, converged = self._iterate(A_full, apply_P, Yt, train, val)
        alpha = torch.zeros(op.n, Yt.shape[1], dtype=F64, device=dev)
        alpha[train] = x
        if not converged and not val.numel():
            warn_not_converged("cg", stopped, self.tol)
        return SolveResult(alpha=alpha, solver="cg", history=history, iterations=it, stopped=stopped,
                           converged=converged, train_index=train.cpu(), val_index=val.cpu())

    def _iterate(self, A_full: Callable, apply_P: Callable, Yt: torch.Tensor, train: torch.Tensor,
                 val: torch.Tensor) -> tuple[torch.Tensor, list, int, str, bool]:
        """The flexible, deflated PCG loop; returns (x, history, iterations, stopped, converged)."""
        n, nv = train.numel(), val.numel()
        b = Yt[train]
        if self.deflate_constant:
            deflate = _Deflation.build(A_full, n, b.device)
            x, pred = deflate.start(b)
        else:
            deflate = lambda Z: Z  # noqa: E731
            x, pred = torch.zeros_like(b), torch.zeros(n + nv, b.shape[1], dtype=F64, device=b.device)
        res = b - pred[:n]
        z = apply_P(res)
        p, rz = deflate(z), (res * z).sum(0)
        bnorm = b.norm(dim=0).clamp_min(1e-300)
        rel = float((res.norm(dim=0) / bnorm).max())
        history, best_val, best_x, bad, stopped = [], float("inf"), x.clone(), 0, ""
        bar = _bar(self.progress, self.tol)
        t0, it = time.perf_counter(), 0
        while it < self.max_iter and rel >= self.tol:
            it += 1
            Ap_full = A_full(p)
            Ap = Ap_full[:n]
            pAp = (p * Ap).sum(0)
            a = torch.where(pAp > 0, rz / pAp.clamp_min(1e-300), torch.zeros_like(rz))
            x += a * p
            res -= a * Ap
            pred += a * Ap_full
            rel = float((res.norm(dim=0) / bnorm).max())
            rec = {"iteration": it, "rel_residual": rel, "seconds": time.perf_counter() - t0}
            if nv:
                v = rec["val_mse"] = float(((pred[n:] - Yt[val]) ** 2).mean())
                best_val, best_x, bad = (v, x.clone(), 0) if v < best_val else (best_val, best_x, bad + 1)
            history.append(rec)
            if self.callback is not None:
                self.callback(it, x)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(res=f"{rel:.2e}")
            if not np.isfinite(rel):
                raise FloatingPointError("CG diverged (non-finite residual); use a float64 operator or a ridge")
            if nv and bad >= self.patience:
                stopped = f"held-out error did not improve for {bad} iterations"
                break
            z_old, z = z, apply_P(res)
            rz_new = (res * z).sum(0)
            # flexible β = rᵀ(z − z_old) / r_oldᵀ z_old (r_oldᵀ z = 0 in exact arithmetic for a fixed P)
            beta = torch.where(rz > 0, (rz_new - (res * z_old).sum(0)) / rz.clamp_min(1e-300), torch.zeros_like(rz))
            rz = rz_new
            p = deflate(z) + beta * p
        if bar is not None:
            bar.close()
        converged = rel < self.tol
        stopped = stopped or (f"relative residual {rel:.2e} < tol" if converged else f"{self.max_iter} iterations")
        return (best_x if nv else x), history, it, stopped, converged


def _bar(progress: bool, tol: float):
    """Iterations done, the residual against ``tol`` (no total: CG stops at ``tol``, usually long before
    ``max_iter``, so a bar to ``max_iter`` would show a false end and ETA)."""
    return None if progress is False else bar(None, desc=f"cg to {tol:.0e}", unit="it", leave=False, progress=progress)
