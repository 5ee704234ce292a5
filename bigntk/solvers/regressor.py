"""``solve`` (one entry point for every solver) and :class:`KernelRegressor` (fit / predict on any operator)."""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .. import backend
from ..operators.base import KernelOperator, as_index
from .cg import ConjugateGradient
from .direct import solve_direct
from .eigenpro import EigenPro
from .policy import SOLVERS, SolveResult, check_direct_fits, choose_solver, resolve_options

__all__ = ["solve", "KernelRegressor", "check_options"]

_ITERATIVE = {"eigenpro": EigenPro, "cg": ConjugateGradient}


def check_options(solver: str, options: dict[str, Any]) -> None:
    """Validate solver option names (and values, by constructing the solver) before any computing.

    ``auto`` accepts what either iterative solver takes; ``direct`` takes none.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
    if solver == "direct":
        if options:
            raise ValueError(f"the direct solver takes no options; got {sorted(options)}")
        return
    names = [solver] if solver != "auto" else list(_ITERATIVE)
    if solver == "auto":
        known = {p for cls in _ITERATIVE.values() for p in inspect.signature(cls).parameters} - {"self", "ridge"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; EigenPro and CG take {sorted(known)}")
    for name in names:
        cls = _ITERATIVE[name]
        mine = {k: v for k, v in options.items() if k in inspect.signature(cls).parameters}
        cls(**resolve_options(cls, mine if solver == "auto" else options, name))  # values checked here


def _direct(op: KernelOperator, Y: torch.Tensor, ridge: float) -> SolveResult:
    check_direct_fits(op.n, op.device, op.dtype)
    K = op.to_dense()
    alpha = solve_direct(K, Y.to(K.dtype), ridge=ridge).to(backend.ACCUM_DTYPE)
    return SolveResult(alpha=alpha, solver="direct", stopped="direct", converged=True,
                       train_index=torch.arange(op.n), val_index=torch.arange(0))


def solve(operator: KernelOperator, Y: Any, solver: str = "auto", *, ridge: float = 0.0,
          direct_max: int | None = None, alpha0: Any = None, **options: Any) -> SolveResult:
    """Solve (K + ridge·I) α = Y on a kernel operator.

    Parameters
    ----------
    operator : KernelOperator over n points (restrict it first: ``op.restrict(observed)``).
    Y : (n,) or (n, l) targets.
    solver : "auto" (``bigntk.solvers.policy``), "direct", "eigenpro" or "cg".
    direct_max : override the ``auto`` direct/iterative threshold.
    alpha0 : (n,) or (n, l) initial weights for EigenPro (a warm start); the direct solve is exact and
        does not need one (ignored), CG does not take one.
    options : passed to :class:`~bigntk.solvers.EigenPro` (epochs, seed, checkpoint, …) or
        :class:`~bigntk.solvers.ConjugateGradient` (max_iter, tol, preconditioner, …); a name the
        chosen solver does not take is an error.

    Returns
    -------
    :class:`~bigntk.solvers.SolveResult`; ``.alpha`` is (n, l) float64 (``(n,)`` for a 1-D ``Y``).
    """
    Yt = backend.to_tensor(Y, device=operator.device, dtype=backend.ACCUM_DTYPE)
    Y2 = Yt[:, None] if Yt.ndim == 1 else Yt
    if Y2.ndim != 2 or Y2.shape[0] != operator.n:
        raise ValueError(f"Y has {Y2.shape[0]} rows for an operator over {operator.n} points")
    name = choose_solver(operator, solver, direct_max)
    if name == "direct":
        if options:
            raise ValueError(f"the direct solver takes no options; got {sorted(options)}")
        result = _direct(operator, Y2, ridge)
    else:
        cls = _ITERATIVE[name]
        est = cls(ridge=ridge, **resolve_options(cls, options, name))
        if alpha0 is not None and name != "eigenpro":
            raise ValueError(f"a warm start (alpha0) is taken by the eigenpro solver, not {name!r}")
        result = est.fit(operator, Y2) if alpha0 is None else est.fit(operator, Y2, alpha0=alpha0)
    if Yt.ndim == 1:
        result.alpha = result.alpha[:, 0]
    return result


class KernelRegressor(BaseEstimator):
    """Kernel regression on any :class:`~bigntk.operators.KernelOperator` (your own kernels too).

    The operator spans all points (training and prediction); ``fit`` takes targets for a subset.
    Solver options go in ``solver_options`` (keyword arguments are merged into it).

    Examples
    --------
    >>> reg = KernelRegressor(NTKOperator(prior), solver="eigenpro", epochs=20, seed=0)
    >>> reg.fit(Y_obs, train=observed_columns)       # Y_obs: (len(train), l)
    >>> Y_hat = reg.predict()                        # (n, l) predictions at every point
    """

    def __init__(self, operator: KernelOperator, solver: str = "auto", *, ridge: float = 0.0,
                 direct_max: int | None = None, solver_options: dict | None = None, **options: Any):
        self.operator, self.solver, self.ridge, self.direct_max = operator, solver, ridge, direct_max
        self.solver_options = {**(solver_options or {}), **options} if options else solver_options

    def __sklearn_clone__(self) -> "KernelRegressor":
        # the operator is shared, not deep-copied (it may hold a large compact kernel or a dask client)
        return type(self)(**self.get_params(deep=False))

    def fit(self, Y: Any, train: Any = None) -> "KernelRegressor":
        """Fit on targets ``Y`` ((len(train),) or (len(train), l)) at points ``train`` (None = all)."""
        op = self.operator
        if not isinstance(op, KernelOperator):
            raise TypeError("operator must be a bigntk.operators.KernelOperator")
        self.train_ = as_index(train, op.n, op.device)
        Yt = backend.to_tensor(Y, device=op.device, dtype=backend.ACCUM_DTYPE)
        self.squeeze_ = Yt.ndim == 1
        Yt = Yt[:, None] if self.squeeze_ else Yt
        if Yt.shape[0] != self.train_.numel():
            raise ValueError(f"Y has {Yt.shape[0]} rows but {self.train_.numel()} training points were given")
        self.result_ = solve(op.restrict(self.train_), Yt, self.solver, ridge=float(self.ridge),
                             direct_max=self.direct_max, **(self.solver_options or {}))
        self.alpha_, self.history_ = self.result_.alpha, self.result_.history
        return self

    def predict(self, rows: Any = None) -> np.ndarray:
        """Predictions K[rows, train] α as a numpy array ((len(rows), l), or (len(rows),))."""
        if not hasattr(self, "alpha_"):
            raise RuntimeError("call fit() before predict()")
        out = backend.to_numpy(self.operator.matmul(self.alpha_, rows=rows, cols=self.train_))
        return out[:, 0] if self.squeeze_ else out
