"""``solve`` (one entry point for every solver) and the scikit-learn-style :class:`KernelRegressor`."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import backend
from ..operators.base import KernelOperator, as_index
from .cg import ConjugateGradient
from .direct import solve_direct
from .eigenpro import EigenPro

__all__ = ["solve", "KernelRegressor", "DIRECT_MAX", "SOLVERS"]

#: ``solver="auto"`` uses the direct (Cholesky) solve up to this many training points.
DIRECT_MAX = 30_000
SOLVERS = ("auto", "direct", "eigenpro", "cg")


def _direct(op: KernelOperator, Y: torch.Tensor, ridge: float) -> torch.Tensor:
    K = op.to_dense().to(backend.ACCUM_DTYPE) if op.dtype == backend.ACCUM_DTYPE else op.to_dense()
    return solve_direct(K, Y.to(K.dtype), ridge=ridge).to(backend.ACCUM_DTYPE)


def solve(operator: KernelOperator, Y: Any, solver: str = "auto", *, ridge: float = 0.0,
          direct_max: int = DIRECT_MAX, return_result: bool = False, **solver_kwargs):
    """Solve (K + ridge·I) α = Y on a kernel operator.

    Parameters
    ----------
    operator : KernelOperator over n points (restrict it first: ``op.restrict(observed)``).
    Y : (n,) or (n, l) targets.
    solver : "auto" (direct when n ≤ ``direct_max``, else EigenPro), "direct", "eigenpro" or "cg".
    solver_kwargs : passed to :class:`~bigntk.solvers.EigenPro` (epochs, seed, checkpoint, …) or
        :class:`~bigntk.solvers.ConjugateGradient` (max_iter, tol, preconditioner, …).

    Returns
    -------
    α : (n, l) float64 tensor (or the solver's result object with ``return_result=True``).
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
    Yt = backend.to_tensor(Y, device=operator.device, dtype=backend.ACCUM_DTYPE)
    squeeze = Yt.ndim == 1
    Y2 = Yt[:, None] if squeeze else Yt
    if Y2.shape[0] != operator.n:
        raise ValueError(f"Y has {Y2.shape[0]} rows for an operator over {operator.n} points")
    if solver == "auto":
        solver = "direct" if operator.n <= direct_max else "eigenpro"
    if solver == "direct":
        if solver_kwargs:
            raise TypeError(f"the direct solver takes no options {sorted(solver_kwargs)}")
        alpha, result = _direct(operator, Y2, ridge), None
    elif solver == "eigenpro":
        result = EigenPro(ridge=ridge, **solver_kwargs).fit(operator, Y2)
        alpha = result.alpha
    else:
        result = ConjugateGradient(ridge=ridge, **solver_kwargs).fit(operator, Y2)
        alpha = result.alpha
    if return_result:
        return result if result is not None else alpha
    return alpha[:, 0] if squeeze else alpha


class KernelRegressor:
    """Kernel regression on any :class:`~bigntk.operators.KernelOperator` (your own kernels too).

    The operator spans all points (training and prediction); ``fit`` takes targets for a subset.

    Examples
    --------
    >>> reg = KernelRegressor(NTKOperator(prior), solver="eigenpro", epochs=20, seed=0)
    >>> reg.fit(Y_obs, train=observed_columns)       # Y_obs: (len(train), l)
    >>> Y_hat = reg.predict()                        # (n, l) predictions at every point
    """

    def __init__(self, operator: KernelOperator, solver: str = "auto", *, ridge: float = 0.0,
                 direct_max: int = DIRECT_MAX, **solver_kwargs):
        if not isinstance(operator, KernelOperator):
            raise TypeError("operator must be a bigntk.operators.KernelOperator")
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
        self.operator, self.solver, self.ridge = operator, solver, float(ridge)
        self.direct_max, self.solver_kwargs = direct_max, solver_kwargs

    def fit(self, Y: Any, train: Any = None) -> "KernelRegressor":
        """Fit on targets ``Y`` ((len(train),) or (len(train), l)) at points ``train`` (None = all)."""
        op = self.operator
        self.train_ = as_index(train, op.n, op.device)
        Yt = backend.to_tensor(Y, device=op.device, dtype=backend.ACCUM_DTYPE)
        self._squeeze = Yt.ndim == 1
        Yt = Yt[:, None] if self._squeeze else Yt
        if Yt.shape[0] != self.train_.numel():
            raise ValueError(f"Y has {Yt.shape[0]} rows but {self.train_.numel()} training points were given")
        res = solve(op.restrict(self.train_), Yt, self.solver, ridge=self.ridge, direct_max=self.direct_max,
                    return_result=True, **self.solver_kwargs)
        self.result_ = res if not isinstance(res, torch.Tensor) else None
        self.alpha_ = res if isinstance(res, torch.Tensor) else res.alpha
        self.history_ = getattr(self.result_, "history", [])
        return self

    def predict(self, rows: Any = None) -> np.ndarray:
        """Predictions K[rows, train] α as a numpy array ((len(rows), l), or (len(rows),))."""
        if not hasattr(self, "alpha_"):
            raise RuntimeError("call fit() before predict()")
        out = self.operator.matmul(self.alpha_, rows=rows, cols=self.train_)
        out = backend.to_numpy(out)
        return out[:, 0] if self._squeeze else out


def fit_ntk_iterative(completer: Any, cols: Any, Y_S: Any, *, solver: str = "eigenpro", checkpoint: Any = None,
                      progress: bool | None = None, **solver_kwargs) -> torch.Tensor:
    """Iterative path of ``bigntk.NTKCompleter``: α for one observed column set, streamed.

    Builds :class:`~bigntk.operators.FactorisedNTKOperator` when the prior is factorised (CMap scale,
    no per-column features), else :class:`~bigntk.operators.NTKOperator`, restricts it to ``cols`` and
    runs ``solve(..., solver)``. ``checkpoint`` is a directory: each observed set checkpoints to its own
    group ``<checkpoint>/set-<hash of cols>``. Returns α (len(cols), r) in the completer's dtype.
    """
    import hashlib
    from pathlib import Path

    from ..operators import FactorisedNTKOperator, NTKOperator

    prior = completer.prior_
    kw = dict(depth=completer.depth, activation=completer.activation, negative_slope=completer.negative_slope,
              device=completer.device_, dtype=completer.dtype_, memory_budget=completer._budget())
    op = FactorisedNTKOperator(prior, **kw) if prior.factors() is not None else NTKOperator(prior, **kw)
    c = as_index(cols, op.n, op.device)
    if checkpoint is not None and solver == "eigenpro":
        tag = hashlib.sha256(backend.to_numpy(c).astype(np.int64).tobytes()).hexdigest()[:16]
        Path(checkpoint).mkdir(parents=True, exist_ok=True)
        solver_kwargs["checkpoint"] = str(Path(checkpoint) / f"set-{tag}")
    if progress is None:
        progress = bool(getattr(completer, "progress", True))
    alpha = solve(op.restrict(c), Y_S, solver, ridge=float(completer.ridge), progress=progress, **solver_kwargs)
    return alpha.to(completer.dtype_)
