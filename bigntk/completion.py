"""Matrix completion with the fully connected NTK (Radhakrishnan et al., PNAS 2022, Theorem 1).

Row i of Y (m × n) is kernel regression over its observed columns S_i with the kernel
K[j, j'] = κ_depth(ρ[j, j']), ρ the normalised Gram of the prior columns (the NTK between
entries of different rows is exactly 0, so rows decouple):

    α_i = (K[S_i, S_i] + ridge·I)⁻¹ y_i[S_i],     ŷ_i = K[:, S_i] α_i.

Rows that share an observed set share one solve (multi-output): in drug screening whole columns are
missing, so all 978 gene rows are solved together. Distinct observed sets of equal small size are
batched into one batched Cholesky. Every kernel entry comes from one NTK operator
(``bigntk.operators.ntk_operator``); the solver for each set follows ``bigntk.solvers.policy``.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
from sklearn.base import BaseEstimator

from . import backend
from ._validation import check_matrix_and_mask, check_nonneg, check_representable
from .kernels.ntk import check_activation
from .operators import KernelOperator, ntk_operator
from .priors import Prior, as_prior
from .progress import bar as progress_bar
from .solvers import check_options, choose_solver, solve, solve_direct
from .solvers.policy import SOLVERS, check_direct_fits  # noqa: F401 (SOLVERS re-exported)

__all__ = ["complete", "NTKCompleter", "SOLVERS"]

#: Observed sets up to this size are batched together (equal sizes) into one batched Cholesky.
_BATCH_MAX_SET = 1024


@dataclass
class _PatternFit:
    rows: np.ndarray  # (r,) rows of Y sharing this observed set
    cols: torch.Tensor  # (s,) observed columns
    alpha: torch.Tensor  # (s, r) dual coefficients


def ntk_operator_on(client: Any, prior: Prior, **kwargs: Any) -> KernelOperator:
    """``ntk_operator(prior, **kwargs)`` in process (``client`` None) or sharded over the workers of a
    ``dask.distributed.Client`` (:func:`bigntk.distributed.distributed_operator`)."""
    if client is None:
        return ntk_operator(prior, **kwargs)
    from .distributed import distributed_operator

    return distributed_operator(client, ntk_operator, prior, n=prior.n, **kwargs)


class NTKCompleter(BaseEstimator):
    """Fully connected NTK matrix completion with a feature prior (a scikit-learn estimator).

    Parameters
    ----------
    prior : Prior or array (p × n)
        Feature prior over the n columns of Y (see :mod:`bigntk.priors`).
    depth : int, number of hidden layers (≥ 1).
    activation : "relu" or "leaky_relu"; negative_slope for the latter.
    ridge : float ≥ 0, added unscaled to the kernel diagonal.
    nugget : float ≥ 0, identity nugget τ added to the prior (the paper's code uses 1.5).
    solver : "auto" (``bigntk.solvers.policy``: direct up to ``direct_max`` observed columns per set,
        EigenPro above), "direct", "eigenpro" or "cg".
    direct_max : int, optional; override of the ``auto`` threshold.
    solver_options : dict, optional; passed to the iterative solver (``epochs``, ``seed``, ``tol``,
        ``checkpoint`` — a directory, one checkpoint group per observed set — …). Keyword arguments
        given to the constructor are merged into it.
    device, dtype, memory_budget, threads : see :mod:`bigntk.backend` (float32 by default; the Gram is
        always accumulated in float64; ``threads`` is applied at ``fit`` when given).
    client : a ``dask.distributed.Client``, optional: the kernel's columns are sharded over its workers
        (:mod:`bigntk.distributed`); predictions equal the in-process ones up to float64 rounding.
    progress : show a tqdm bar over observed sets.

    Attributes after ``fit``: ``operator_`` (the NTK operator over all n columns), ``n_rows_``,
    ``n_columns_``, ``n_patterns_`` (distinct observed sets), ``n_empty_rows_``, ``solvers_`` (the
    solver used per observed set).
    """

    def __init__(self, prior: Any = None, *, depth: int = 1, activation: str = "relu",
                 negative_slope: float = 0.01, ridge: float = 0.0, nugget: float = 0.0, solver: str = "auto",
                 direct_max: Optional[int] = None, solver_options: Optional[dict] = None, device: Any = None,
                 dtype: Any = None, memory_budget: Any = None, threads: Optional[int] = None,
                 client: Any = None, progress: bool = True, **options: Any) -> None:
        self.prior, self.depth, self.activation, self.negative_slope = prior, depth, activation, negative_slope
        self.ridge, self.nugget, self.solver, self.direct_max = ridge, nugget, solver, direct_max
        self.solver_options = {**(solver_options or {}), **options} if options else solver_options
        self.device, self.dtype, self.memory_budget, self.threads = device, dtype, memory_budget, threads
        self.client, self.progress = client, progress

    def __sklearn_clone__(self) -> "NTKCompleter":
        # parameters are shared, not deep-copied: a prior is never mutated, a dask Client must not be copied
        return type(self)(**self.get_params(deep=False))

    # -- setup ------------------------------------------------------------------------------
    def _check_params(self, n: int) -> Prior:
        if self.prior is None:
            raise ValueError("NTKCompleter needs a prior (a Prior or a (p, n) array)")
        if isinstance(self.depth, bool) or not isinstance(self.depth, (int, np.integer)) or self.depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {self.depth!r}")
        check_activation(self.activation, self.negative_slope)
        check_nonneg("ridge", self.ridge)
        check_nonneg("nugget", self.nugget)
        check_options(self.solver, dict(self.solver_options or {}))
        self.compute_ = backend.compute(self.device, self.dtype, self.memory_budget, self.threads)
        if self.threads is not None:
            backend.set_threads(self.threads)
        prior = as_prior(self.prior)
        if prior.n != n:
            raise ValueError(f"prior describes {prior.n} columns but Y has {n} columns")
        return prior.with_nugget(self.nugget) if self.nugget else prior

    def _operator(self, prior: Prior) -> KernelOperator:
        c = self.compute_
        return ntk_operator_on(self.client, prior, depth=self.depth, activation=self.activation,
                               negative_slope=self.negative_slope, dtype=c.dtype, device=c.device,
                               memory_budget=c.memory_budget)

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, Y: Any, mask: Any = None, *, dual_coef_init: Any = None) -> "NTKCompleter":
        """Fit on an (m × n) matrix ``Y``; ``mask`` (m × n bool, True = observed) defaults to the
        finite entries of Y. NaN is allowed only where ``mask`` is False. Returns ``self``.

        ``dual_coef_init`` (n × m, optional): a warm start for the iterative solver — the weights of a
        related fit, e.g. another estimator's :attr:`dual_coef_` over the same columns (its entries at
        observed (column, row) positions are used; a direct solve does not need one).
        """
        Y, mask = check_matrix_and_mask(Y, mask)
        prior = self._check_params(Y.shape[1])
        check_representable(Y[mask], self.compute_.dtype)
        self._init = None
        if dual_coef_init is not None:
            self._init = np.asarray(dual_coef_init, dtype=np.float32)
            if self._init.shape != Y.T.shape:
                raise ValueError(f"dual_coef_init must have shape (n, m) = {Y.T.shape}, got {self._init.shape}")
        self.operator_ = self._operator(prior)
        self.Y_, self.mask_ = Y, mask
        self.n_rows_, self.n_columns_ = Y.shape
        groups = self._observed_sets(mask)
        self.n_patterns_ = len(groups)
        self.fits_: List[_PatternFit] = []
        self.solvers_: List[str] = []
        bar = progress_bar(len(groups), desc="ntk fit (observed sets)", unit="set",
                           progress=self.progress and len(groups) > 1)
        for batch in self._batches(groups):
            self.fits_ += self._fit_batch(batch)
            bar.update(len(batch))
        bar.close()
        return self

    def _observed_sets(self, mask: np.ndarray) -> list:
        """[(observed columns, rows sharing them)] for every distinct non-empty row pattern."""
        patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        groups = [(patterns[u].nonzero()[0], np.flatnonzero(inverse == u)) for u in range(len(patterns))]
        self.n_empty_rows_ = int(sum(rows.size for cols, rows in groups if cols.size == 0))
        if self.n_empty_rows_:
            warnings.warn(f"{self.n_empty_rows_} row(s) have no observed entry; their predictions are 0",
                          stacklevel=3)
        return [g for g in groups if g[0].size > 0]

    def _batches(self, groups) -> Iterator[list]:
        """Group observed sets of equal small size so they share one batched Cholesky."""
        small: Dict[int, list] = {}
        for cols, rows in groups:
            if cols.size <= _BATCH_MAX_SET:
                small.setdefault(cols.size, []).append((cols, rows))
            else:
                yield [(cols, rows)]
        for s, items in small.items():
            per_batch = max(1, self.compute_.memory_budget // (s * s * 8 * 2))
            for start in range(0, len(items), per_batch):
                yield items[start : start + per_batch]

    def _targets(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.Y_[np.ix_(rows, cols)].T, dtype=self.compute_.dtype, device=self.compute_.device)

    def _fit_batch(self, batch) -> List[_PatternFit]:
        op, s = self.operator_, batch[0][0].size
        cols_t = [torch.as_tensor(cols, device=op.device) for cols, _ in batch]
        solver = choose_solver(op.restrict(cols_t[0]), self.solver, self.direct_max)
        self.solvers_ += [solver] * len(batch)
        if solver != "direct":
            return [self._fit_iterative(c, rows, solver) for c, (_, rows) in zip(cols_t, batch)]
        r_max = max(rows.size for _, rows in batch)
        check_direct_fits(s, op.device, op.dtype, count=len(batch))
        K = torch.empty(len(batch), s, s, dtype=op.dtype, device=op.device)
        rhs = torch.zeros(len(batch), s, r_max, dtype=op.dtype, device=op.device)
        for b, (c, (cols, rows)) in enumerate(zip(cols_t, batch)):
            K[b] = op.block(c, c)
            rhs[b, :, : rows.size] = self._targets(rows, cols)
        alpha = solve_direct(K, rhs, float(self.ridge))
        return [_PatternFit(rows, cols_t[b], alpha[b, :, : rows.size]) for b, (_, rows) in enumerate(batch)]

    def _fit_iterative(self, cols: torch.Tensor, rows: np.ndarray, solver: str) -> _PatternFit:
        """One observed set by a streaming solver; a ``checkpoint`` directory gets one group per set."""
        options = dict(self.solver_options or {})
        options.setdefault("progress", self.progress)
        if options.get("checkpoint") is not None:
            tag = hashlib.sha256(backend.to_numpy(cols).astype(np.int64).tobytes()).hexdigest()[:16]
            Path(options["checkpoint"]).mkdir(parents=True, exist_ok=True)
            options["checkpoint"] = str(Path(options["checkpoint"]) / f"set-{tag}")
            if solver != "eigenpro":
                options.pop("checkpoint")  # only EigenPro checkpoints; CG restarts cheaply
        c = backend.to_numpy(cols)
        if self._init is not None and solver == "eigenpro":
            options["alpha0"] = self._init[np.ix_(c, rows)]
        res = solve(self.operator_.restrict(cols), self._targets(rows, c), solver, ridge=float(self.ridge),
                    **options)
        return _PatternFit(rows, cols, res.alpha.to(self.compute_.dtype))

    @property
    def dual_coef_(self) -> np.ndarray:
        """(n, m) float32 fitted weights α[column, row] (0 where the entry was not observed); the
        prediction of row i is K[:, S_i] α[S_i, i] over its observed columns S_i."""
        self._check_fitted()
        out = np.zeros((self.n_columns_, self.n_rows_), dtype=np.float32)
        for f in self.fits_:
            out[np.ix_(backend.to_numpy(f.cols), f.rows)] = backend.to_numpy(f.alpha.float())
        return out

    # -- predict ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "fits_"):
            raise RuntimeError("this NTKCompleter is not fitted yet; call fit(Y, mask) first")

    def predict(self, columns: Any = None) -> np.ndarray:
        """Kernel predictions for every row at ``columns`` (default all): (m, len(columns)).

        Observed entries are *not* replaced here (see :meth:`transform`); rows without any
        observation predict 0.
        """
        self._check_fitted()
        op = self.operator_
        cols = torch.arange(self.n_columns_, device=op.device) if columns is None else torch.as_tensor(
            np.asarray(columns), device=op.device).reshape(-1)
        out = np.zeros((self.n_rows_, len(cols)), dtype=np.result_type(self.Y_.dtype, np.float32))
        for fit in self.fits_:
            pred = op.matmul(fit.alpha, rows=cols, cols=fit.cols)  # (len(cols), r), float64
            out[fit.rows] = backend.to_numpy(pred.T)
        if not np.isfinite(out).all():
            raise FloatingPointError("the NTK predictions are not finite; rescale Y or use dtype='float64'")
        return out

    def transform(self, Y: Any = None, mask: Any = None) -> np.ndarray:
        """Completed (m × n) matrix: predictions with the observed entries returned unchanged.

        With ``Y`` (imputer style), rows of a new matrix over the same columns are fitted with this
        estimator's settings first (rows are independent regressions); without, the fitted matrix.
        """
        if Y is not None:
            return self.__sklearn_clone__().fit(Y, mask).transform()
        self._check_fitted()
        out = self.predict()
        out[self.mask_] = self.Y_[self.mask_]
        return out

    def fit_transform(self, Y: Any, mask: Any = None) -> np.ndarray:
        """``fit(Y, mask).transform()``."""
        return self.fit(Y, mask).transform()

    def score(self, Y: Any, mask: Any = None, *, held_out: float = 0.1, seed: int = 0) -> float:
        """R² on a seeded fraction ``held_out`` of the observed entries of ``Y``, fitted on the rest.

        Rows of a completion problem are independent regressions over the columns, so a row split
        (what ``GridSearchCV`` does) cannot test an entry the model saw: the score therefore refits
        this estimator's settings on the test rows with ``held_out`` of their observed entries hidden.
        """
        Y, mask = check_matrix_and_mask(Y, mask)
        hide = mask & (np.random.default_rng(seed).random(mask.shape) < held_out)
        if not hide.any():
            raise ValueError("no observed entry was held out; give more rows or a larger held_out")
        pred = self.__sklearn_clone__().set_params(progress=False).fit(Y, mask & ~hide).predict()
        truth = Y[hide]
        return float(1.0 - ((pred[hide] - truth) ** 2).sum() / max(((truth - truth.mean()) ** 2).sum(), 1e-300))


def complete(Y: Any, mask: Any, prior: Any, *, depth: int = 1, activation: str = "relu",
             negative_slope: float = 0.01, ridge: float = 0.0, nugget: float = 0.0, solver: str = "auto",
             device: Any = None, dtype: Any = None, **kwargs: Any) -> np.ndarray:
    """Complete Y (m × n) from the entries where ``mask`` (m × n, bool; None = the finite entries) is True.

    ``prior`` is a :class:`bigntk.priors.Prior` or a (p × n) array whose column j describes
    column j of Y. Returns an (m × n) numpy array with the observed entries unchanged; rows with
    no observation are 0 (with a warning). See :class:`NTKCompleter` for the parameters (estimator
    parameters and solver options may both be passed as keywords).
    """
    init = kwargs.pop("dual_coef_init", None)
    est = NTKCompleter(prior, depth=depth, activation=activation, negative_slope=negative_slope, ridge=ridge,
                       nugget=nugget, solver=solver, device=device, dtype=dtype, **kwargs)
    return est.fit(Y, mask, dual_coef_init=init).transform()
