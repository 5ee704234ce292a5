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
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import backend
from ..operators.base import KernelOperator
from ..preconditioners import (MaskedCirculantPreconditioner, block_jacobi_preconditioner,
                              nystrom_preconditioner)

__all__ = ["ConjugateGradient", "CGResult", "nystrom_preconditioner", "block_jacobi_preconditioner", "PRECONDITIONERS"]

#: accepted values of ``ConjugateGradient(preconditioner=...)``
PRECONDITIONERS = ("auto", "circulant", "nystrom", "block_jacobi", None, "none")

F64 = backend.ACCUM_DTYPE


@dataclass
class CGResult:
    alpha: torch.Tensor  #: (n, l) float64, zero on held-out points
    history: list = field(default_factory=list)
    iterations: int = 0
    stopped: str = ""
    train_index: torch.Tensor | None = None
    val_index: torch.Tensor | None = None


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

    def fit(self, operator: KernelOperator, Y: Any, *, sketch_operator: KernelOperator | None = None) -> CGResult:
        """Solve for Y of shape (n, l) (or (n,)).

        ``sketch_operator`` (optional, same kernel and points as ``operator``, e.g. a float32 copy of a
        float64 operator) serves only the Nyström sketch K·Ω of the preconditioner: the preconditioner
        need not be exact, and the rank-r product is the dominant set-up cost (~1.7× faster in float32
        for the polyphase CNTK operator). CG's own products always use ``operator``.
        """
        op, dev = operator, operator.device
        if sketch_operator is not None and sketch_operator.n != op.n:
            raise ValueError(f"sketch_operator has n={sketch_operator.n}, operator has n={op.n}")
        Yt = backend.to_tensor(Y, device=dev, dtype=F64)
        if Yt.ndim == 1:
            Yt = Yt[:, None]
        if Yt.ndim != 2 or Yt.shape[0] != op.n:
            raise ValueError(f"Y must have shape (n={op.n}, l), got {tuple(Yt.shape)}")
        if self.val_fraction > 0:
            g = torch.Generator().manual_seed(self.seed + 7919)
            perm = torch.randperm(op.n, generator=g)
            nv = max(1, int(round(self.val_fraction * op.n)))
            val, train = perm[:nv].sort().values.to(dev), perm[nv:].sort().values.to(dev)
        else:
            val, train = torch.arange(0, device=dev), torch.arange(op.n, device=dev)
        n, nv = train.numel(), val.numel()
        rows = torch.cat([train, val])
        ridge = self.ridge

        def A_full(V):  # (K + ridge I)[train ∪ val, train] @ V
            out = op.matmul(V, rows=rows, cols=train)
            out[:n] += ridge * V
            return out

        b = Yt[train]
        apply_P = lambda R: R.clone()  # noqa: E731
        kind = self.preconditioner
        if kind == "auto":
            kind = "circulant" if op.grid() is not None else "nystrom"
        if kind == "circulant":
            grid = op.grid()
            if grid is None:
                raise ValueError("preconditioner='circulant' needs a CNTK operator on an image grid (op.grid())")
            mu = ridge if ridge > 0 else 1e-6 * float(op.diag().to(F64).mean())
            apply_P = MaskedCirculantPreconditioner(grid.restrict(train), mu, period=self.period)
        elif kind == "nystrom":
            r = min(200, max(1, n // 4)) if self.rank == "auto" else int(self.rank)
            if sketch_operator is None:
                sketch = lambda V: A_full(V)[:n] - ridge * V  # noqa: E731
            else:
                sketch = lambda V: sketch_operator.matmul(V, rows=train, cols=train).to(F64)  # noqa: E731
            apply_P, _ = nystrom_preconditioner(sketch, n, r, ridge, seed=self.seed, device=dev)
        elif kind == "block_jacobi":
            pos = torch.full((op.n,), -1, dtype=torch.int64, device=dev)
            pos[train] = torch.arange(n, device=dev)
            blocks = ([torch.as_tensor(b, dtype=torch.int64, device=dev) for b in self.blocks]
                      if self.blocks is not None else list(torch.arange(op.n, device=dev).split(self.block_size)))
            blocks = [pb[pb >= 0] for pb in (pos[b] for b in blocks)]  # positions among the training points
            blocks = [b for b in blocks if b.numel()]
            if sum(b.numel() for b in blocks) != n or torch.cat(blocks).unique().numel() != n:
                raise ValueError("blocks must partition the operator's points")
            mu = ridge if ridge > 0 else 1e-10 * float(op.diag().to(F64).mean())
            apply_P = block_jacobi_preconditioner(lambda i, j: op.block(train[i], train[j]), blocks, mu)
        self.preconditioner_ = apply_P
        # deflation space W = [1/√n]
        if self.deflate_constant:
            W = torch.full((n, 1), 1.0 / np.sqrt(n), dtype=F64, device=dev)
            AW = A_full(W)
            AWt = AW[:n]
            WAW_inv = 1.0 / float((W * AWt).sum())
            x = W @ (WAW_inv * (W.T @ b))
            pred = AW @ (WAW_inv * (W.T @ b))  # A[rows] x
        else:
            x = torch.zeros_like(b)
            pred = torch.zeros(rows.numel(), b.shape[1], dtype=F64, device=dev)

        def deflate(Z):
            if not self.deflate_constant:
                return Z
            return Z - W @ (WAW_inv * (AWt.T @ Z))

        res = b - pred[:n]
        z = apply_P(res)
        p = deflate(z)
        rz = (res * z).sum(0)
        bnorm = b.norm(dim=0).clamp_min(1e-300)
        history, best_val, best_x, bad, stopped = [], float("inf"), x.clone(), 0, ""
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.max_iter, desc="cg", unit="it", leave=False)
        t0 = time.perf_counter()
        it = 0
        for it in range(1, self.max_iter + 1):
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
                v = float(((pred[n:] - Yt[val]) ** 2).mean())
                rec["val_mse"] = v
                if v < best_val:
                    best_val, best_x, bad = v, x.clone(), 0
                else:
                    bad += 1
            history.append(rec)
            if self.callback is not None:
                self.callback(it, x)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(res=f"{rel:.2e}")
            if rel < self.tol:
                stopped = f"relative residual {rel:.2e} < tol"
                break
            if nv and bad >= self.patience:
                stopped = f"held-out error did not improve for {bad} iterations"
                break
            if not np.isfinite(rel):
                raise FloatingPointError("CG diverged (non-finite residual); use a float64 operator or a ridge")
            z_old, z = z, apply_P(res)
            rz_new = (res * z).sum(0)
            # flexible β = rᵀ(z − z_old) / r_oldᵀ z_old (r_oldᵀ z = 0 in exact arithmetic for a fixed P)
            beta = torch.where(rz > 0, (rz_new - (res * z_old).sum(0)) / rz.clamp_min(1e-300), torch.zeros_like(rz))
            rz = rz_new
            p = deflate(z) + beta * p
        if bar is not None:
            bar.close()
        final = best_x if nv else x
        alpha = torch.zeros(op.n, b.shape[1], dtype=F64, device=dev)
        alpha[train] = final
        return CGResult(alpha=alpha, history=history, iterations=it, stopped=stopped or f"{self.max_iter} iterations",
                        train_index=train.cpu(), val_index=val.cpu())
