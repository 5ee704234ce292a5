"""Low-rank matrix completion: lin-RFM (alpha = 1 and SVD-free alpha = 1/2) and classic baselines.

``Y`` (m, n) with ``mask`` (m, n, True = observed) -> completed (m, n) float64, observed entries
kept. Every method stops on a held-out fraction of the *observed* entries and keeps its best iterate.

Functional API: :func:`lin_rfm`, :func:`gd_factorization`, :func:`als`, :func:`soft_impute` (the
completion), their ``*_result`` variants (a :class:`CompletionResult`) and :func:`complete_lowrank`
(by name). scikit-learn estimators: :class:`LinRFM`, :class:`GDFactorization`, :class:`ALS`,
:class:`SoftImpute`.
"""
from __future__ import annotations

from typing import Any

from ._common import CompletionResult, NumericalError, check_inputs, split_observed
from .baselines import (
    als,
    als_result,
    gd_factorization,
    gd_factorization_result,
    soft_impute,
    soft_impute_result,
)
from .estimators import ALS, GDFactorization, LinRFM, LowRankCompleter, SoftImpute
from .linrfm import lin_rfm, lin_rfm_result

__all__ = [
    "lin_rfm", "lin_rfm_result", "gd_factorization", "gd_factorization_result", "als",
    "als_result", "soft_impute", "soft_impute_result", "complete_lowrank", "METHODS",
    "LinRFM", "GDFactorization", "ALS", "SoftImpute", "LowRankCompleter", "ESTIMATORS",
    "CompletionResult", "NumericalError", "check_inputs", "split_observed",
]

#: method name -> function returning a CompletionResult
METHODS = {
    "linrfm": lin_rfm_result,
    "gd": gd_factorization_result,
    "als": als_result,
    "softimpute": soft_impute_result,
}

#: method name -> estimator class (same parameters as the function)
ESTIMATORS: dict[str, type[LowRankCompleter]] = {
    "linrfm": LinRFM,
    "gd": GDFactorization,
    "als": ALS,
    "softimpute": SoftImpute,
}


def complete_lowrank(Y: Any, mask: Any | None = None, method: str = "linrfm",
                     **kwargs: Any) -> CompletionResult:
    """Dispatch to one method by name (``linrfm``, ``gd``, ``als``, ``softimpute``)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    return METHODS[method](Y, mask, **kwargs)
