"""Matrix completion with the fully connected NTK (Radhakrishnan et al., PNAS 2022, Theorem 1).

Row i of Y (m × n) is kernel regression over its observed columns S_i with the kernel
K[j, j'] = κ_depth(ρ[j, j']), ρ the normalised Gram of the prior columns (the NTK between
entries of different rows is exactly 0, so rows decouple):

    α_i = (K[S_i, S_i] + ridge·I)⁻¹ y_i[S_i],     ŷ_i = K[:, S_i] α_i.

Rows that share an observed set share one factorisation (multi-output solve): in drug screening
whole columns are missing, so all 978 gene rows are solved with one Cholesky. Distinct observed
sets of equal size are batched into one batched Cholesky.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ._validation import check_matrix_and_mask, check_nonneg
from .backend import ACCUM_DTYPE, free_memory_bytes, resolve_device, resolve_dtype
from .kernels.ntk import check_activation, ntk
from .priors import Prior, as_prior
from .solvers.direct import solve_direct
from .solvers.regressor import DIRECT_MAX

__all__ = ["complete", "NTKCompleter", "SOLVERS"]

#: Solver names accepted by ``complete`` / ``NTKCompleter``.
SOLVERS = ("auto", "direct", "eigenpro", "cg")
#: Observed sets up to this size are batched together (equal sizes) into one batched Cholesky.
_BATCH_MAX_SET = 1024
#: float64 temporaries alive while κ is evaluated on a tile (ρ, arccos, sqrt, Σ, Θ, …).
_TILE_TEMPORARIES = 8


@dataclass
class _PatternFit:
    rows: np.ndarray  # (r,) rows of Y sharing this observed set
    cols: torch.Tensor  # (s,) observed columns
    alpha: torch.Tensor  # (s, r) dual coefficients


class NTKCompleter:
    """Fully connected NTK matrix completion with a feature prior (scikit-learn style).

    Parameters
    ----------
    prior : Prior or array (p × n)
        Feature prior over the n columns of Y (see :mod:`bigntk.priors`).
    depth : int, number of hidden layers (≥ 1).
    activation : "relu" or "leaky_relu"; negative_slope for the latter.
    ridge : float ≥ 0, added unscaled to the kernel diagonal.
    nugget : float ≥ 0, identity nugget τ added to the prior (the paper's code uses 1.5).
    solver : "auto" (direct up to ``direct_max`` observed columns per set, EigenPro above), "direct",
        "eigenpro" or "cg" (iterative solvers; extra keyword arguments go to the solver).
    direct_max : int, largest observed set ``solver="auto"`` solves directly (default 30 000).
    device, dtype : compute device and working dtype (see :mod:`bigntk.backend`); float64 is
        always used to accumulate the Gram.
    memory_budget : bytes for kernel tiles (default: a quarter of free memory, at most 4 GiB).
    progress : show a tqdm bar over observed sets.

    Attributes after ``fit``: ``n_rows_``, ``n_columns_``, ``n_patterns_`` (distinct observed sets),
    ``n_empty_rows_``.
    """

    def __init__(
        self,
        prior: Any,
        *,
        depth: int = 1,
        activation: str = "relu",
        negative_slope: float = 0.01,
        ridge: float = 0.0,
        nugget: float = 0.0,
        solver: str = "auto",
        device: Any = None,
        dtype: Any = None,
        memory_budget: Optional[int] = None,
        progress: bool = True,
        direct_max: int = DIRECT_MAX,
        **solver_kwargs: Any,
    ) -> None:
        self.prior = prior
        self.depth = depth
        self.activation = activation
        self.negative_slope = negative_slope
        self.ridge = ridge
        self.nugget = nugget
        self.solver = solver
        self.device = device
        self.dtype = dtype
        self.memory_budget = memory_budget
        self.progress = progress
        self.direct_max = direct_max
        self.solver_kwargs = solver_kwargs

    # -- setup ------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if isinstance(self.depth, bool) or not isinstance(self.depth, (int, np.integer)) or self.depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {self.depth!r}")
        check_activation(self.activation, self.negative_slope)
        check_nonneg("ridge", self.ridge)
        check_nonneg("nugget", self.nugget)
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {SOLVERS}")
        self.device_ = resolve_device(self.device)
        self.dtype_ = resolve_dtype(self.dtype)

    def _resolved_prior(self, n: int) -> Prior:
        prior = as_prior(self.prior)
        if prior.n != n:
            raise ValueError(f"prior describes {prior.n} columns but Y has {n} columns")
        return prior.with_nugget(self.nugget) if self.nugget else prior

    def _budget(self) -> int:
        if self.memory_budget is not None:
            return int(self.memory_budget)
        return int(min(free_memory_bytes(self.device_) // 4, 4 << 30))

    def kernel(self, rows: Any = None, cols: Any = None) -> torch.Tensor:
        """NTK block κ(ρ[rows, cols]) in the working dtype, (len(rows), len(cols))."""
        rho = self.prior_.gram(rows, cols, device=self.device_, dtype=ACCUM_DTYPE)
        return ntk(rho, self.depth, self.activation, self.negative_slope).to(self.dtype_)

    def _tile_rows(self, width: int) -> int:
        return max(1, self._budget() // (max(width, 1) * 8 * _TILE_TEMPORARIES))

    def _kernel_tiled(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """κ(ρ[rows, cols]) built in row tiles so float64 temporaries stay within the budget."""
        out = torch.empty(len(rows), len(cols), dtype=self.dtype_, device=self.device_)
        step = self._tile_rows(len(cols))
        for start in range(0, len(rows), step):
            out[start : start + step] = self.kernel(rows[start : start + step], cols)
        return out

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, Y: Any, mask: Any) -> "NTKCompleter":
        """Fit on an (m × n) matrix ``Y`` with boolean ``mask`` (True = observed).

        NaN is allowed only where ``mask`` is False. Returns ``self``.
        """
        self._check_params()
        Y, mask = check_matrix_and_mask(Y, mask)
        self.prior_ = self._resolved_prior(Y.shape[1])
        self.Y_, self.mask_ = Y, mask
        self.n_rows_, self.n_columns_ = Y.shape
        patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        groups = [(patterns[u].nonzero()[0], np.flatnonzero(inverse == u)) for u in range(len(patterns))]
        empty = [g for g in groups if g[0].size == 0]
        self.n_empty_rows_ = int(sum(g[1].size for g in empty))
        if self.n_empty_rows_:
            warnings.warn(f"{self.n_empty_rows_} row(s) have no observed entry; their predictions are 0", stacklevel=2)
        groups = [g for g in groups if g[0].size > 0]
        self.n_patterns_ = len(groups)
        self.fits_: List[_PatternFit] = []
        bar = tqdm(total=len(groups), desc="ntk fit (observed sets)", disable=not self.progress or len(groups) < 2)
        for batch in self._batches(groups):
            self.fits_ += self._fit_batch(batch)
            bar.update(len(batch))
        bar.close()
        return self

    def _batches(self, groups):
        """Group observed sets of equal small size so they share one batched Cholesky."""
        small: Dict[int, list] = {}
        for cols, rows in groups:
            if cols.size <= _BATCH_MAX_SET:
                small.setdefault(cols.size, []).append((cols, rows))
            else:
                yield [(cols, rows)]
        for s, items in small.items():
            per_batch = max(1, self._budget() // (s * s * 8 * 2))
            for start in range(0, len(items), per_batch):
                yield items[start : start + per_batch]

    def _solver_for(self, s: int) -> str:
        if self.solver == "auto":
            return "direct" if s <= self.direct_max else "eigenpro"
        return self.solver

    def _fit_batch(self, batch) -> List[_PatternFit]:
        s = batch[0][0].size
        solver = self._solver_for(s)
        if solver != "direct":
            return [self._fit_iterative(cols, rows, solver) for cols, rows in batch]
        r_max = max(rows.size for _, rows in batch)
        K = torch.empty(len(batch), s, s, dtype=self.dtype_, device=self.device_)
        rhs = torch.zeros(len(batch), s, r_max, dtype=self.dtype_, device=self.device_)
        cols_t = []
        for b, (cols, rows) in enumerate(batch):
            c = torch.as_tensor(cols, device=self.device_)
            cols_t.append(c)
            K[b] = self._kernel_tiled(c, c)
            rhs[b, :, : rows.size] = torch.as_tensor(self.Y_[np.ix_(rows, cols)].T, dtype=self.dtype_, device=self.device_)
        alpha = solve_direct(K, rhs, self.ridge)
        return [_PatternFit(rows, cols_t[b], alpha[b, :, : rows.size]) for b, (_, rows) in enumerate(batch)]

    def _fit_iterative(self, cols: np.ndarray, rows: np.ndarray, solver: str) -> _PatternFit:
        from .solvers import fit_ntk_iterative  # the streaming solvers (EigenPro / CG)

        c = torch.as_tensor(cols, device=self.device_)
        Y_S = torch.as_tensor(self.Y_[np.ix_(rows, cols)].T, dtype=self.dtype_, device=self.device_)
        alpha = fit_ntk_iterative(self, c, Y_S, solver=solver, **self.solver_kwargs)
        return _PatternFit(rows, c, alpha)

    # -- predict ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "fits_"):
            raise RuntimeError("this NTKCompleter is not fitted yet; call fit(Y, mask) first")

    def predict(self, columns: Any = None) -> np.ndarray:
        """Kernel predictions for every row at ``columns`` (default all): (m, len(columns)).

        Observed entries are *not* replaced here (see :meth:`complete`); rows without any
        observation predict 0.
        """
        self._check_fitted()
        cols = torch.arange(self.n_columns_, device=self.device_) if columns is None else torch.as_tensor(
            np.asarray(columns), device=self.device_
        ).reshape(-1)
        out = np.zeros((self.n_rows_, len(cols)), dtype=np.result_type(self.Y_.dtype, np.float32))
        for fit in self.fits_:
            pred = torch.empty(len(cols), fit.alpha.shape[1], dtype=self.dtype_, device=self.device_)
            step = self._tile_rows(len(fit.cols))
            for start in range(0, len(cols), step):
                pred[start : start + step] = self.kernel(cols[start : start + step], fit.cols) @ fit.alpha
            out[fit.rows] = pred.T.cpu().numpy()
        return out

    def complete(self) -> np.ndarray:
        """Completed (m × n) matrix: predictions with observed entries returned unchanged."""
        out = self.predict()
        out[self.mask_] = self.Y_[self.mask_]
        return out

    def fit_complete(self, Y: Any, mask: Any) -> np.ndarray:
        """``fit(Y, mask).complete()``."""
        return self.fit(Y, mask).complete()


def complete(
    Y: Any,
    mask: Any,
    prior: Any,
    *,
    depth: int = 1,
    activation: str = "relu",
    negative_slope: float = 0.01,
    ridge: float = 0.0,
    nugget: float = 0.0,
    solver: str = "auto",
    device: Any = None,
    dtype: Any = None,
    **kwargs: Any,
) -> np.ndarray:
    """Complete Y (m × n) from the entries where ``mask`` (m × n, bool) is True.

    ``prior`` is a :class:`bigntk.priors.Prior` or a (p × n) array whose column j describes
    column j of Y. Returns an (m × n) numpy array with the observed entries unchanged; rows with
    no observation are 0 (with a warning). See :class:`NTKCompleter` for the parameters.
    """
    est = NTKCompleter(
        prior,
        depth=depth,
        activation=activation,
        negative_slope=negative_slope,
        ridge=ridge,
        nugget=nugget,
        solver=solver,
        device=device,
        dtype=dtype,
        **kwargs,
    )
    return est.fit(Y, mask).complete()
