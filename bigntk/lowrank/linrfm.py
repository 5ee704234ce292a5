"""Linear Recursive Feature Machines (lin-RFM) for low-rank matrix completion.

Radhakrishnan, Belkin, Drusvyatskiy, "Linear Recursive Feature Machines provably recover low-rank
matrices", PNAS 2025. With ``Y`` (m, n), ``Omega_i`` the observed columns of row i and a column
metric ``M`` (n, n) starting at the identity, one iteration is

    P   = M^(2 alpha)                       alpha = 1/2: P = M (no decomposition)
    a_i = (P[Omega_i, Omega_i] + lam I)^-1 y_i[Omega_i]        per-row ridge regression
    yhat_i = a_i^T P[Omega_i, :]            observed entries then replaced by the data
    M   = Yhat^T Yhat / m                   AGOP of the linear predictor

Two accelerations (defaults): the ridge follows the held-out error (lam = reg_err * e, so it is
large while the fit is poor and vanishes at convergence), and the metric is built from a
heavy-ball extrapolation Yhat_k + beta (Yhat_k - Yhat_{k-1}) with restart when the held-out error
rises. Both are judged on held-out observed entries only.

The metric lives on the smaller side: when n > m the problem is transposed (so M is min(m, n)^2).
The per-row solves are batched: rows are sorted by |Omega_i| and processed in chunks padded to the
chunk's largest |Omega_i| (batched Cholesky in float64); the prediction is one sparse (CSR) times
dense product, so the hot path has no Python loop over rows.

Unlike the published code, stopping never looks at the missing entries: a random fraction of the
*observed* entries is held out, the best iterate by held-out error is kept, and the held-out entries
are put back to their data values in the output.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..backend import ACCUM_DTYPE, free_memory_bytes, resolve_device, resolve_dtype, to_numpy
from ._common import (
    CompletionResult,
    EarlyStopper,
    ProgressCallback,
    check_inputs,
    finish,
    relative_val_error,
    split_observed,
    warn_interrupted,
)

__all__ = ["lin_rfm", "lin_rfm_result", "LinRFM"]


@dataclass
class _RowBatch:
    """Rows with similar |Omega_i|, padded to ``k`` columns. Shapes: rows (b,), cols/valid/y (b, k),
    pos (b, k) = position of each entry in the CSR value array (pads point past the end),
    flat (b*k*k,) = flat indices of the block P[O_i, O_i] in P (n, n) viewed as a vector."""

    rows: torch.Tensor
    cols: torch.Tensor
    valid: torch.Tensor
    y: torch.Tensor
    pos: torch.Tensor
    flat: torch.Tensor


def _row_batches(train_mask: np.ndarray, Y: np.ndarray, device: torch.device,  # noqa: C901
                 max_batch_elems: int) -> tuple[list[_RowBatch], torch.Tensor, torch.Tensor, int]:
    """Group rows by number of training entries. Returns (batches, crow_indices, col_indices, nnz)
    of the CSR pattern of the training mask (row-major order)."""
    m, n_cols = train_mask.shape
    flat_dtype = np.int32 if n_cols * n_cols < 2**31 else np.int64  # halves the index memory
    counts = train_mask.sum(axis=1)
    rows_nz, cols_nz = np.nonzero(train_mask)  # row-major, matches CSR order
    crow = np.concatenate([[0], np.cumsum(counts)])
    nnz = int(rows_nz.size)
    order = np.argsort(counts, kind="stable")
    order = order[counts[order] > 0]  # empty rows: prediction stays 0
    batches: list[_RowBatch] = []
    start = 0
    while start < order.size:
        k = int(counts[order[start]])
        # extend while the padded chunk (b * kmax^2) stays inside the budget
        stop = start + 1
        while stop < order.size:
            kmax = int(counts[order[stop]])
            if (stop + 1 - start) * kmax * kmax > max_batch_elems:
                break
            stop += 1
        rows = order[start:stop]
        k = int(counts[rows].max())
        offs = np.arange(k)
        valid = offs[None, :] < counts[rows][:, None]
        pos = np.where(valid, crow[rows][:, None] + offs[None, :], nnz)
        cols = np.where(valid, cols_nz[np.minimum(pos, max(nnz - 1, 0))], 0)
        y = np.where(valid, Y[rows[:, None], cols], 0.0)
        batches.append(_RowBatch(
            rows=torch.as_tensor(rows, device=device),
            cols=torch.as_tensor(cols, device=device),
            valid=torch.as_tensor(valid, device=device),
            y=torch.as_tensor(y, dtype=ACCUM_DTYPE, device=device),
            pos=torch.as_tensor(pos, device=device),
            flat=torch.as_tensor((cols[:, :, None] * n_cols + cols[:, None, :]).reshape(-1).astype(flat_dtype),
                                 device=device),
        ))
        start = stop
    return (batches, torch.as_tensor(crow, device=device), torch.as_tensor(cols_nz, device=device), nnz)


def _metric_power(M: torch.Tensor, alpha: float) -> torch.Tensor:
    """P = M^(2 alpha) for symmetric PSD M (n, n). alpha = 1/2: M itself; alpha = 1: M @ M;
    otherwise a symmetric eigendecomposition with negative round-off eigenvalues clipped to 0."""
    power = 2.0 * alpha
    if power == 1.0:
        return M
    if power == 2.0:
        return M @ M
    evals, evecs = torch.linalg.eigh(M.to(ACCUM_DTYPE))
    evals = evals.clamp_min(0.0) ** power
    return ((evecs * evals) @ evecs.T).to(M.dtype)


def _solve_rows(P: torch.Tensor, batches: list[_RowBatch], lam: float, nnz: int) -> torch.Tensor:
    """Coefficients a (nnz,) in CSR order: a_i = (P[O_i, O_i] + lam * s I)^-1 y_i, batched, where
    s = mean diag of P (so ``lam`` is scale-free)."""
    scale = float(torch.diagonal(P).mean().clamp_min(1e-300))
    # ridge never below the round-off of P's dtype, else the blocks may lose definiteness
    lam = max(lam, 50.0 * torch.finfo(P.dtype).eps)
    values = torch.zeros(nnz + 1, dtype=ACCUM_DTYPE, device=P.device)
    for b in batches:
        # flat take is several times faster than 2-D advanced indexing on CPU
        K = P.reshape(-1).index_select(0, b.flat).view(b.cols.shape + b.cols.shape[1:])
        K = K.to(ACCUM_DTYPE)  # (b, k, k)
        K = K * (b.valid[:, :, None] & b.valid[:, None, :])
        diag = torch.where(b.valid, lam * scale, 1.0).to(ACCUM_DTYPE)  # pads: identity, rhs 0 -> a = 0
        K.diagonal(dim1=-2, dim2=-1).add_(diag)
        L, info = torch.linalg.cholesky_ex(K)
        jitter = lam * scale
        while bool((info > 0).any()):  # round-off broke definiteness: more jitter (rare)
            K.diagonal(dim1=-2, dim2=-1).add_(torch.where(b.valid, 9.0 * jitter, 0.0))
            jitter *= 10.0
            L, info = torch.linalg.cholesky_ex(K)
        a = torch.cholesky_solve(b.y[:, :, None], L)[:, :, 0]
        values[b.pos.reshape(-1)] = a.reshape(-1)
    return values[:nnz]


def lin_rfm_result(
    Y: Any,
    mask: Any | None = None,
    *,
    alpha: float = 0.5,
    reg: float | None = None,
    reg_min: float = 1e-6,
    reg_decay: float = 0.97,
    reg_up: float = 2.0,
    reg_schedule: str = "val",
    reg_err: float = 1.0,
    momentum: float = 0.9,
    max_iter: int = 5000,
    val_fraction: float = 0.1,
    patience: int = 300,
    min_delta: float = 1e-3,
    tol: float = 1e-12,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    progress: bool = False,
    callback: ProgressCallback | None = None,
) -> CompletionResult:
    """lin-RFM completion; returns a :class:`CompletionResult` (see :func:`lin_rfm` for arguments).

    ``info`` holds ``metric`` (the final column metric M, on the side it was learned: (n, n), or
    (m, m) when transposed), ``transposed``, ``reg`` (the last relative ridge) and ``seconds``.
    """
    import time

    t0 = time.perf_counter()
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0; got {alpha}")
    if reg is None:  # empirical: alpha < 1 needs a larger ridge early on, else the iteration drifts
        reg = 1e-1 if alpha < 1 else 1e-2
    if not reg > 0 or not reg_min > 0:
        raise ValueError("reg and reg_min must be > 0")
    if not 0 < reg_decay <= 1 or reg_up < 1:
        raise ValueError(f"need 0 < reg_decay <= 1 and reg_up >= 1; got {reg_decay}, {reg_up}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}")
    if reg_schedule not in ("val", "decay"):
        raise ValueError(f"reg_schedule must be 'val' or 'decay'; got {reg_schedule!r}")
    if not 0 <= momentum < 1 or not reg_err > 0:
        raise ValueError(f"need 0 <= momentum < 1 and reg_err > 0; got {momentum}, {reg_err}")
    Y_np, mask_np = check_inputs(Y, mask)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    train, val = split_observed(mask_np, val_fraction, seed)

    transposed = Y_np.shape[1] > Y_np.shape[0]  # metric on the smaller side
    Yw, train_w, val_w = (Y_np.T, train.T, val.T) if transposed else (Y_np, train, val)
    m, n = Yw.shape

    # chunk budget for padded (b, k, k) float64 blocks: <= 1/8 of free memory, at most 2^26 elements
    budget = int(min(2**26, free_memory_bytes(dev) // (8 * 8 * 4)))
    batches, crow, col_idx, nnz = _row_batches(train_w, Yw, dev, max(budget, 1))
    tr_rows, tr_cols = (torch.as_tensor(a, device=dev) for a in np.nonzero(train_w))
    tr_vals = torch.as_tensor(Yw[train_w], dtype=dt, device=dev)
    va_rows, va_cols = (torch.as_tensor(a, device=dev) for a in np.nonzero(val_w))
    va_vals = torch.as_tensor(Yw[val_w], dtype=ACCUM_DTYPE, device=dev)

    M = torch.eye(n, dtype=dt, device=dev)
    stopper = EarlyStopper(patience, min_delta=min_delta, tol=tol, has_val=va_vals.numel() > 0)
    best = None
    history: list[float] = []
    lam = reg
    prev = None  # previous iterate, for the extrapolation
    it = 0
    bar = tqdm(total=max_iter, desc=f"lin-RFM a={alpha:g}", disable=not progress, leave=False)
    try:
        for it in range(max_iter):
            P = _metric_power(M, alpha)
            a = _solve_rows(P, batches, lam, nnz).to(dt)
            with warnings.catch_warnings():  # "sparse CSR is in beta" on every call
                warnings.simplefilter("ignore", UserWarning)
                A = torch.sparse_csr_tensor(crow, col_idx, a, size=(m, n), dtype=dt, device=dev,
                                            check_invariants=False)
            Yhat = A @ P  # (m, n): yhat_i = a_i^T P[O_i, :]
            err = relative_val_error(Yhat, va_rows, va_cols, va_vals)
            Yhat[tr_rows, tr_cols] = tr_vals
            history.append(err)
            is_best, stop = stopper.update(it, err)
            if is_best:
                best = Yhat  # never modified in place after this point: no copy needed
            if callback is not None:
                callback(it, Yhat.T if transposed else Yhat)
            bar.update(1)
            bar.set_postfix(val=f"{err:.2e}", reg=f"{lam:.1e}")
            if stop:
                break
            rose = len(history) > 1 and history[-1] > history[-2]
            # heavy-ball extrapolation of the completion (missing entries only; the observed ones stay
            # data), restarted whenever the held-out error rises; costs one (m, n) axpy
            Ye = Yhat
            if momentum > 0 and prev is not None and not rose:
                Ye = Yhat + momentum * (Yhat - prev)
                Ye[tr_rows, tr_cols] = tr_vals
            prev = Yhat
            M = (Ye.T @ Ye) / m
            if reg_schedule == "val" and va_vals.numel() > 0:
                # ridge tracks the held-out relative error: large while far off (keeps alpha < 1 from
                # drifting), vanishing as the fit converges (no ridge bias at the end)
                lam = min(reg, max(reg_min, reg_err * err))
            elif rose:  # "decay": shrink while the held-out error falls, back off when it rises
                lam = min(lam * reg_up, reg)
            else:
                lam = max(lam * reg_decay, reg_min)
    except KeyboardInterrupt:
        warn_interrupted("lin_rfm", it)
        if best is None:
            raise
    finally:
        bar.close()
    out = to_numpy(best.to(torch.float64))
    out = out.T if transposed else out
    return CompletionResult(
        completed=finish(out, Y_np, mask_np),
        n_iter=it + 1,
        best_iter=stopper.best_iter,
        val_error=stopper.best,
        history=history,
        info={"metric": to_numpy(M), "transposed": transposed, "reg": lam,
              "seconds": time.perf_counter() - t0},
    )


def lin_rfm(Y: Any, mask: Any | None = None, **kwargs: Any) -> np.ndarray:
    """Complete a low-rank matrix with lin-RFM.

    Parameters
    ----------
    Y : (m, n) array. Values at unobserved entries are ignored (NaN allowed there).
    mask : (m, n) bool, True = observed; default ``~isnan(Y)``.
    alpha : metric power; P = M^(2 alpha). 0.5 (default) is SVD-free, 1 needs one extra GEMM,
        others a symmetric eigendecomposition per iteration.
    reg, reg_min, reg_schedule, reg_err, reg_decay, reg_up : ridge lam (relative to the mean
        diagonal of P) starts at ``reg`` (also its ceiling; default 0.1 for alpha < 1, 0.01
        otherwise). ``reg_schedule="val"`` (default): lam = clip(reg_err * e, reg_min, reg) with e
        the relative held-out MSE of the last iterate, so the ridge vanishes as the fit converges.
        ``"decay"`` (also used with no held-out set): after an iteration whose held-out error fell
        lam is multiplied by ``reg_decay`` down to ``reg_min``, after one where it rose by ``reg_up``.
    momentum : heavy-ball extrapolation Yhat + momentum * (Yhat - Yhat_prev) of the completion
        before the metric update (observed entries kept at their data), restarted whenever the
        held-out error rises. 0 disables; 0.9 cuts alpha = 1/2 iterations about 10x.
    max_iter, patience, min_delta, tol : stop after ``max_iter`` iterations, after ``patience``
        iterations without a relative held-out improvement of ``min_delta``, or once the relative
        held-out MSE is <= ``tol``. lin-RFM with alpha = 1/2 improves slowly for hundreds of
        iterations before it converges: keep ``patience`` large.
    val_fraction : fraction of observed entries held out for stopping (0 disables; then the last
        iterate is returned).
    seed : seed of the held-out split.
    device, dtype : see :mod:`bigntk.backend` (float32 default; per-row solves run in float64).
    progress : show a tqdm bar with the held-out error.
    callback : ``callback(iteration, Yhat)`` after each iteration (monitoring only).

    Returns
    -------
    (m, n) float64 array: the best iterate, with every observed entry equal to its data value.
    """
    return lin_rfm_result(Y, mask, **kwargs).completed


class LinRFM:
    """Estimator wrapper (scikit-learn style) around :func:`lin_rfm_result`.

    ``LinRFM(alpha=0.5).fit(Y, mask).completed_`` is the (m, n) completion; also ``metric_``,
    ``n_iter_``, ``best_iter_``, ``val_error_``, ``history_``. ``fit_transform`` returns the completion.
    """

    def __init__(self, alpha: float = 0.5, reg: float | None = None, *, reg_min: float = 1e-6,
                 reg_decay: float = 0.97, reg_up: float = 2.0, reg_schedule: str = "val", reg_err: float = 1.0,
                 momentum: float = 0.9, max_iter: int = 5000, val_fraction: float = 0.1,
                 patience: int = 300, min_delta: float = 1e-3, tol: float = 1e-12, seed: int = 0,
                 device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                 progress: bool = False):
        self.alpha, self.reg, self.reg_min, self.reg_decay = alpha, reg, reg_min, reg_decay
        self.reg_up, self.reg_schedule, self.reg_err, self.momentum = reg_up, reg_schedule, reg_err, momentum
        self.max_iter, self.val_fraction, self.patience = max_iter, val_fraction, patience
        self.min_delta, self.tol, self.seed = min_delta, tol, seed
        self.device, self.dtype, self.progress = device, dtype, progress

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def fit(self, Y: Any, mask: Any | None = None, callback: ProgressCallback | None = None) -> "LinRFM":
        res = lin_rfm_result(Y, mask, callback=callback, **self.get_params())
        self.completed_ = res.completed
        self.metric_ = res.info["metric"]
        self.transposed_ = res.info["transposed"]
        self.n_iter_, self.best_iter_ = res.n_iter, res.best_iter
        self.val_error_, self.history_ = res.val_error, res.history
        return self

    def fit_transform(self, Y: Any, mask: Any | None = None) -> np.ndarray:
        return self.fit(Y, mask).completed_

    def __repr__(self) -> str:
        return f"LinRFM(alpha={self.alpha}, reg={self.reg}, max_iter={self.max_iter})"
