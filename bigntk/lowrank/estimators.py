"""scikit-learn estimators of the low-rank completers: :class:`LinRFM`, :class:`GDFactorization`,
:class:`ALS`, :class:`SoftImpute`.

Each estimator's parameters are exactly its ``__init__`` arguments, the keyword arguments of the
matching ``*_result`` function (``get_params`` / ``set_params`` / ``sklearn.base.clone`` work; the
values are checked in ``fit``). Imputer-style contract, shapes (m, n):

* ``fit(Y, mask=None)`` completes ``Y`` (``mask`` True = observed; None: NaN marks the missing
  entries) and returns ``self``; fitted attributes end in ``_`` (``completed_``, ``observed_``,
  ``n_iter_``, ``best_iter_``, ``val_error_``, ``history_``, ``scale_`` and per method ones).
* ``transform(Y=None, mask=None)`` returns the (m, n) completion; ``fit_transform(Y, mask=None)``
  fits and returns it.
* ``score(Y, mask=None)`` is a held-out score for model selection (``GridSearchCV``): see
  :meth:`LowRankCompleter.score`.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from ._common import CompletionResult, ProgressCallback, check_inputs, split_observed
from .baselines import als_result, gd_factorization_result, soft_impute_result
from .linrfm import lin_rfm_result

__all__ = ["LowRankCompleter", "LinRFM", "GDFactorization", "ALS", "SoftImpute"]

Device = str | torch.device | None
DType = str | torch.dtype | None


def _store_params(estimator: BaseEstimator, params: dict[str, Any]) -> None:
    """Set each ``__init__`` argument as an attribute of the same name, unchanged (sklearn rule)."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


class LowRankCompleter(BaseEstimator):
    """Base of the completion estimators: ``fit`` / ``transform`` / ``fit_transform`` / ``score``
    around one ``*_result`` function (``_complete``)."""

    _complete: ClassVar[Callable[..., CompletionResult]]

    def fit(self, Y: Any, mask: Any | None = None, callback: ProgressCallback | None = None) -> "LowRankCompleter":
        """Complete ``Y`` (m, n) with observed entries ``mask`` (m, n; default ``~isnan(Y)``);
        ``callback(iteration, Yhat)`` watches the iterations. Returns ``self``."""
        _, observed = check_inputs(Y, mask)
        res = type(self)._complete(Y, observed, callback=callback, **self.get_params())
        self.completed_, self.observed_ = res.completed, observed
        self.n_iter_, self.best_iter_ = res.n_iter, res.best_iter
        self.val_error_, self.history_ = res.val_error, res.history
        self.scale_, self.seconds_ = res.info["scale"], res.info["seconds"]
        self._fitted_extras(res.info)
        return self

    def _fitted_extras(self, info: dict[str, Any]) -> None:
        """Method-specific fitted attributes from the result's ``info``."""

    def transform(self, Y: Any | None = None, mask: Any | None = None) -> np.ndarray:
        """The (m, n) completion (a copy of ``completed_``).

        Completion is transductive (the model *is* the completed matrix), so ``Y`` must have the
        fitted shape: its observed entries (``mask``, default its non-NaN entries) are returned as
        they are, the others filled from the fit. For another matrix, fit again.
        """
        check_is_fitted(self, "completed_")
        out = self.completed_.copy()
        if Y is None:
            return out
        Y_np, observed = check_inputs(Y, mask)
        if Y_np.shape != out.shape:
            raise ValueError(f"Y has shape {Y_np.shape} but the estimator was fitted on {out.shape}; "
                             "completion is transductive: fit the new matrix instead")
        out[observed] = Y_np[observed]
        return out

    def fit_transform(self, Y: Any, mask: Any | None = None,
                      callback: ProgressCallback | None = None) -> np.ndarray:
        """``fit(Y, mask)`` and return the (m, n) completion (``completed_`` itself, no copy)."""
        return self.fit(Y, mask, callback).completed_

    def score(self, Y: Any, mask: Any | None = None, *, holdout: float = 0.1, seed: int | None = None) -> float:
        """Negative relative MSE on held-out observed entries (higher is better; 0 is perfect).

        A seeded ``holdout`` fraction (``seed`` default: the estimator's ``seed``) of the observed
        entries of ``Y`` (m, n) is set aside (every row and column keeps a training entry), a
        clone of this estimator with the same parameters is fitted on the rest, and the score is
        ``-||Yhat - Y||^2 / ||Y||^2`` over the set-aside entries. ``self`` is not changed.

        Why not the usual fit/predict on separate rows: the rows of a completion problem are not
        i.i.d. samples; each row is completed from the others (and lin-RFM learns its metric from
        all of them), so a model fitted on some rows has nothing to say about a held-out row.
        The held-out unit is therefore an *entry* of the one matrix. With ``GridSearchCV`` pass the
        whole matrix as both the training and the test "fold", ``cv=[(rows, rows)]`` with
        ``rows = np.arange(m)`` (and the mask, if any, as ``y``); the split happens in here. (The
        search's own ``fit`` on the whole matrix is not used by the score: one extra fit per
        candidate.)
        """
        Y_np, observed = check_inputs(Y, mask)
        fit_mask, test_mask = split_observed(observed, holdout, self.seed if seed is None else seed)
        if not test_mask.any():
            raise ValueError(f"holdout={holdout} leaves no held-out entry to score on")
        completed = clone(self).fit(Y_np, fit_mask).completed_
        diff = completed[test_mask] - Y_np[test_mask]
        denom = float(Y_np[test_mask] @ Y_np[test_mask])
        return -float(diff @ diff) / (denom if denom > 0 else 1.0)


class LinRFM(LowRankCompleter):
    """lin-RFM completion (:func:`~bigntk.lowrank.lin_rfm`; parameters as there).

    ``LinRFM(alpha=0.5).fit(Y, mask).completed_`` is the (m, n) completion; also ``metric_`` (the
    metric of ``Y / scale_``: (n, n), or (m, m) when ``transposed_``), ``reg_`` (the last ridge).
    """

    _complete = staticmethod(lin_rfm_result)

    def __init__(self, alpha: float = 0.5, reg: float | None = None, *, reg_min: float = 1e-6,
                 reg_decay: float = 0.97, reg_up: float = 2.0, reg_schedule: str = "val",
                 reg_err: float = 1.0, momentum: float = 0.9, max_iter: int = 2000,
                 val_fraction: float = 0.1, patience: int = 100, min_delta: float = 1e-2,
                 tol: float = 1e-4, seed: int = 0, device: Device = None, dtype: DType = None,
                 memory_budget: int | str | None = None, progress: bool = False):
        _store_params(self, locals())

    def _fitted_extras(self, info: dict[str, Any]) -> None:
        self.metric_, self.transposed_, self.reg_ = info["metric"], info["transposed"], info["reg"]


class GDFactorization(LowRankCompleter):
    """Burer-Monteiro gradient descent (:func:`~bigntk.lowrank.gd_factorization`; parameters as
    there). Fitted factors ``U_`` (m, r), ``V_`` (n, r), float64 in data units."""

    _complete = staticmethod(gd_factorization_result)

    def __init__(self, rank: int, *, step: float = 0.2, balance: float = 0.25, max_iter: int = 3000,
                 val_fraction: float = 0.1, patience: int = 100, min_delta: float = 1e-4,
                 tol: float = 1e-14, seed: int = 0, device: Device = None, dtype: DType = None,
                 progress: bool = False):
        _store_params(self, locals())

    def _fitted_extras(self, info: dict[str, Any]) -> None:
        self.U_, self.V_ = info["U"], info["V"]


class ALS(LowRankCompleter):
    """Alternating ridge least squares (:func:`~bigntk.lowrank.als`; parameters as there).
    Fitted factors ``U_`` (m, r), ``V_`` (n, r), float64 in data units."""

    _complete = staticmethod(als_result)

    def __init__(self, rank: int, *, ridge: float = 1e-3, max_iter: int = 500, val_fraction: float = 0.1,
                 patience: int = 30, min_delta: float = 1e-4, tol: float = 1e-14, seed: int = 0,
                 device: Device = None, dtype: DType = None, progress: bool = False):
        _store_params(self, locals())

    def _fitted_extras(self, info: dict[str, Any]) -> None:
        self.U_, self.V_ = info["U"], info["V"]


class SoftImpute(LowRankCompleter):
    """SoftImpute along a threshold path (:func:`~bigntk.lowrank.soft_impute`; parameters as
    there). ``threshold_``: the last singular-value threshold, in data units."""

    _complete = staticmethod(soft_impute_result)

    def __init__(self, *, shrink_start: float = 0.5, shrink_decay: float = 0.5, shrink_min: float = 1e-4,
                 path_tol: float = 1e-3, momentum: bool = True, svd_rank: int | None = None,
                 max_iter: int = 1000, val_fraction: float = 0.1, patience: int = 50,
                 min_delta: float = 1e-4, tol: float = 1e-14, seed: int = 0, device: Device = None,
                 dtype: DType = None, progress: bool = False):
        _store_params(self, locals())

    def _fitted_extras(self, info: dict[str, Any]) -> None:
        self.threshold_ = info["threshold"]
