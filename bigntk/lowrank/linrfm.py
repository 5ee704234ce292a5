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
are put back to their data values in the output. The iterations run on ``Y / scale`` with ``scale``
a power of 4 (exact), so the metric cannot overflow float32 however large the data are.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import backend
from ..backend import ACCUM_DTYPE, to_numpy
from ._common import (
    CompletionResult,
    EarlyStopper,
    NumericalError,
    Prepared,
    ProgressCallback,
    check_finite,
    make_result,
    prepare,
    relative_val_error,
    run_iterations,
)

__all__ = ["lin_rfm", "lin_rfm_result"]

#: how many times the per-row ridge may be raised tenfold when round-off breaks a block's definiteness
MAX_JITTER_STEPS = 8


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
    s = mean diag of P (so ``lam`` is scale-free). Raises :class:`NumericalError` when a block is
    still not positive definite after ``MAX_JITTER_STEPS`` tenfold increases of its ridge."""
    if not bool(torch.isfinite(P).all()):  # else Cholesky fails (NaN) or "succeeds" (inf) for ever
        raise NumericalError("lin_rfm: the metric P has NaN/inf entries (overflow); retry with "
                             "dtype='float64' or a larger reg / reg_min")
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
        for _ in range(MAX_JITTER_STEPS):
            if not bool((info > 0).any()):
                break
            # round-off broke definiteness: more jitter (rare)
            K.diagonal(dim1=-2, dim2=-1).add_(torch.where(b.valid, 9.0 * jitter, 0.0))
            jitter *= 10.0
            L, info = torch.linalg.cholesky_ex(K)
        if bool((info > 0).any()):
            raise NumericalError(
                f"lin_rfm: the per-row ridge systems are not positive definite even with the ridge raised "
                f"10^{MAX_JITTER_STEPS}-fold. Retry with dtype='float64' or a larger reg / reg_min; check "
                "that Y holds no extreme outliers (rescale or clip them).")
        a = torch.cholesky_solve(b.y[:, :, None], L)[:, :, 0]
        values[b.pos.reshape(-1)] = a.reshape(-1)
    return values[:nnz]


@dataclass(frozen=True)
class _Settings:
    """The iteration's parameters (see :func:`lin_rfm`), validated."""

    alpha: float
    reg: float
    reg_min: float
    reg_decay: float
    reg_up: float
    reg_schedule: str
    reg_err: float
    momentum: float


def _settings(alpha: float, reg: float | None, reg_min: float, reg_decay: float, reg_up: float,
              reg_schedule: str, reg_err: float, momentum: float, max_iter: int) -> _Settings:
    """Validate the parameters; ``reg=None`` becomes the alpha-dependent default."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0; got {alpha}")
    if reg is None:  # empirical: alpha < 1 needs a larger ridge early on, else the iteration drifts
        reg = 1e-1 if alpha < 1 else 1e-2
    if not reg > 0 or not reg_min > 0:
        raise ValueError("reg and reg_min must be > 0")
    if not 0 < reg_decay <= 1 or not reg_up >= 1:
        raise ValueError(f"need 0 < reg_decay <= 1 and reg_up >= 1; got {reg_decay}, {reg_up}")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise ValueError(f"max_iter must be an integer >= 1; got {max_iter!r}")
    if reg_schedule not in ("val", "decay"):
        raise ValueError(f"reg_schedule must be 'val' or 'decay'; got {reg_schedule!r}")
    if not 0 <= momentum < 1 or not reg_err > 0:
        raise ValueError(f"need 0 <= momentum < 1 and reg_err > 0; got {momentum}, {reg_err}")
    return _Settings(float(alpha), float(reg), reg_min, reg_decay, reg_up, reg_schedule, reg_err, momentum)


@dataclass
class _Problem:
    """The training / held-out entries of one fit on the device, in the metric's orientation:
    (m, n) with n <= m (``transposed`` says whether that is the caller's Y^T). ``batches``, ``crow``,
    ``col_idx``, ``nnz``: the per-row systems and the CSR pattern (see :func:`_row_batches`);
    ``tr_*`` / ``va_*`` (nnz,): rows, columns and values of the training / held-out entries."""

    shape: tuple[int, int]
    transposed: bool
    batches: list[_RowBatch]
    crow: torch.Tensor
    col_idx: torch.Tensor
    nnz: int
    tr_rows: torch.Tensor
    tr_cols: torch.Tensor
    tr_vals: torch.Tensor
    va_rows: torch.Tensor
    va_cols: torch.Tensor
    va_vals: torch.Tensor


def _problem(prep: Prepared, budget_bytes: int) -> _Problem:
    """Lay out the working data: the metric lives on the smaller side (transpose when n > m); the padded
    per-row systems are batched within ``budget_bytes`` (float64 blocks and ~3 working copies)."""
    dev, dt = prep.device, prep.dtype
    transposed = prep.Yw.shape[1] > prep.Yw.shape[0]
    Yw, train, val = (prep.Yw.T, prep.train.T, prep.val.T) if transposed else (prep.Yw, prep.train, prep.val)
    batches, crow, col_idx, nnz = _row_batches(train, Yw, dev, max(budget_bytes // (8 * 4), 1))
    tr_rows, tr_cols = (torch.as_tensor(a, device=dev) for a in np.nonzero(train))
    va_rows, va_cols = (torch.as_tensor(a, device=dev) for a in np.nonzero(val))
    return _Problem(Yw.shape, transposed, batches, crow, col_idx, nnz, tr_rows, tr_cols,
                    torch.as_tensor(Yw[train], dtype=dt, device=dev), va_rows, va_cols,
                    torch.as_tensor(Yw[val], dtype=ACCUM_DTYPE, device=dev))


def _predict(prob: _Problem, M: torch.Tensor, alpha: float, lam: float, it: int) -> tuple[torch.Tensor, float]:
    """One lin-RFM prediction from the metric M (n, n): (Yhat (m, n) with the training entries set
    to the data, relative held-out MSE of the prediction)."""
    P = _metric_power(M, alpha)
    if P is not M:
        check_finite(P, "metric power P = M^(2 alpha)", "lin_rfm", it)
    a = _solve_rows(P, prob.batches, lam, prob.nnz).to(M.dtype)
    with warnings.catch_warnings():  # "sparse CSR is in beta" on every call
        warnings.simplefilter("ignore", UserWarning)
        A = torch.sparse_csr_tensor(prob.crow, prob.col_idx, a, size=prob.shape, dtype=M.dtype,
                                    device=M.device, check_invariants=False)
    Yhat = A @ P  # (m, n): yhat_i = a_i^T P[O_i, :]
    check_finite(Yhat, "prediction", "lin_rfm", it)
    err = relative_val_error(Yhat, prob.va_rows, prob.va_cols, prob.va_vals)
    Yhat[prob.tr_rows, prob.tr_cols] = prob.tr_vals
    return Yhat, err


class _Iteration:
    """The state of one lin-RFM fit (metric, ridge, previous iterate) and its step."""

    def __init__(self, prob: _Problem, cfg: _Settings, stopper: EarlyStopper, prep: Prepared,
                 callback: ProgressCallback | None):
        self.prob, self.cfg, self.stopper, self.prep, self.callback = prob, cfg, stopper, prep, callback
        self.M = torch.eye(prob.shape[1], dtype=prep.dtype, device=prep.device)
        self.lam = cfg.reg
        self.prev: torch.Tensor | None = None  # previous iterate, for the extrapolation

    def step(self, it: int) -> tuple[bool, dict[str, str]]:
        """Predict, record (best iterate, stopping), then build the next metric and ridge."""
        prob, lam = self.prob, self.lam
        Yhat, err = _predict(prob, self.M, self.cfg.alpha, lam, it)
        stop = self.stopper.record(it, err, Yhat)  # Yhat is never modified in place: no copy
        self.prep.report(self.callback, it, lambda: Yhat.T if prob.transposed else Yhat)
        if not stop:
            history = self.stopper.history
            rose = len(history) > 1 and history[-1] > history[-2]
            self.M = self._next_metric(Yhat, rose)
            check_finite(self.M, "metric M", "lin_rfm", it)
            self.lam = self._next_ridge(err, rose)
        return stop, {"val": f"{err:.2e}", "reg": f"{lam:.1e}"}

    def _next_metric(self, Yhat: torch.Tensor, rose: bool) -> torch.Tensor:
        """M = Ye^T Ye / m of the heavy-ball extrapolation Ye of the completion (missing entries only;
        the observed ones stay data), restarted whenever the held-out error rises; one (m, n) axpy."""
        Ye = Yhat
        if self.cfg.momentum > 0 and self.prev is not None and not rose:
            Ye = Yhat + self.cfg.momentum * (Yhat - self.prev)
            Ye[self.prob.tr_rows, self.prob.tr_cols] = self.prob.tr_vals
        self.prev = Yhat
        return (Ye.T @ Ye) / self.prob.shape[0]

    def _next_ridge(self, err: float, rose: bool) -> float:
        cfg = self.cfg
        if cfg.reg_schedule == "val" and self.prob.va_vals.numel() > 0:
            # ridge tracks the held-out relative error: large while far off (keeps alpha < 1 from
            # drifting), vanishing as the fit converges (no ridge bias at the end)
            return min(cfg.reg, max(cfg.reg_min, cfg.reg_err * err))
        if rose:  # "decay": shrink while the held-out error falls, back off when it rises
            return min(self.lam * cfg.reg_up, cfg.reg)
        return max(self.lam * cfg.reg_decay, cfg.reg_min)


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
    max_iter: int = 2000,
    val_fraction: float = 0.1,
    patience: int = 100,
    min_delta: float = 1e-2,
    tol: float = 1e-4,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    memory_budget: int | str | None = None,
    progress: bool = False,
    callback: ProgressCallback | None = None,
) -> CompletionResult:
    """lin-RFM completion; returns a :class:`CompletionResult` (see :func:`lin_rfm` for arguments).

    ``info`` holds ``metric`` (the final column metric M of the working data ``Y / scale``, on the
    side it was learned: (n, n), or (m, m) when transposed; ``metric * scale**2`` is the metric in
    data units where that is finite), ``transposed``, ``reg`` (the last relative ridge), ``scale``
    (the working scale, a power of 4) and ``seconds``.
    """
    t0 = time.perf_counter()
    cfg = _settings(alpha, reg, reg_min, reg_decay, reg_up, reg_schedule, reg_err, momentum, max_iter)
    prep = prepare(Y, mask, val_fraction, seed, device, dtype)
    prob = _problem(prep, backend.memory_budget(prep.device, memory_budget))
    stopper = EarlyStopper(patience, min_delta=min_delta, tol=tol, has_val=prob.va_vals.numel() > 0)
    run = _Iteration(prob, cfg, stopper, prep, callback)
    last = run_iterations("lin_rfm", run.step, max_iter, progress, f"lin-RFM a={cfg.alpha:g}", stopper)
    best = stopper.best_iterate
    info = {"metric": to_numpy(run.M), "transposed": prob.transposed, "reg": run.lam,
            "seconds": time.perf_counter() - t0}
    return make_result(prep, best.T if prob.transposed else best, last, stopper, info)


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
    max_iter, patience, min_delta, tol : stop once the relative held-out MSE is <= ``tol``
        (default 1e-4: on the 500 x 500 rank-5 reference problem that is test MSE 1.7e-4 after
        146 iterations, 3.6 s on one CPU thread), after ``patience`` (100) iterations without a
        relative held-out improvement of ``min_delta`` (1e-2) over the error at the last such
        improvement (a fit that cannot recover the matrix stops on its plateau), or after
        ``max_iter`` (2000) iterations. To ask for more accuracy lower ``tol`` (``tol=0`` runs until
        the plateau rule or ``max_iter``), and for slow fits raise ``patience`` / lower
        ``min_delta``: e.g. ``tol=1e-12, patience=300, min_delta=1e-3, max_iter=5000`` reaches test
        MSE 4e-10 on the reference problem in 5000 iterations (101 s).
    val_fraction : fraction of observed entries held out for stopping (0 disables; then the last
        iterate is returned).
    seed : seed of the held-out split.
    device, dtype, memory_budget : see :mod:`bigntk.backend` (float32 default; per-row solves run in
        float64, batched within the memory budget).
    progress : show a tqdm bar with the held-out error.
    callback : ``callback(iteration, Yhat)`` after each iteration (monitoring only).

    Returns
    -------
    (m, n) float64 array: the best iterate, with every observed entry equal to its data value.

    The iterations see ``Y / scale`` with ``scale`` the power of 4 nearest to max |Y| (an exact
    rescaling), so data of any finite magnitude work in float32. A fit whose iterate or metric
    becomes non-finite, or whose per-row systems cannot be factorised even after raising their
    ridge 10^8-fold, raises :class:`~bigntk.lowrank.NumericalError` (a ``ValueError``) with what
    to try; a non-finite completion is never returned.
    """
    return lin_rfm_result(Y, mask, **kwargs).completed
