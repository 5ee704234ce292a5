"""Low-rank matrix completion: lin-RFM (alpha = 1 and SVD-free alpha = 1/2) and classic baselines.

``Y`` (m, n) with ``mask`` (m, n, True = observed) -> completed (m, n) float64, observed entries
kept. Every method stops on a held-out fraction of the *observed* entries and keeps its best iterate.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._common import CompletionResult, check_inputs, split_observed
from .baselines import (
    als,
    als_result,
    gd_factorization,
    gd_factorization_result,
    soft_impute,
    soft_impute_result,
)
from .linrfm import LinRFM, lin_rfm, lin_rfm_result

__all__ = [
    "LinRFM", "lin_rfm", "lin_rfm_result", "gd_factorization", "gd_factorization_result", "als",
    "als_result", "soft_impute", "soft_impute_result", "complete_lowrank", "METHODS",
    "CompletionResult", "check_inputs", "split_observed",
]

#: method name -> function returning a CompletionResult
METHODS = {
    "linrfm": lin_rfm_result,
    "gd": gd_factorization_result,
    "als": als_result,
    "softimpute": soft_impute_result,
}


def complete_lowrank(Y: Any, mask: Any | None = None, method: str = "linrfm",
                     **kwargs: Any) -> CompletionResult:
    """Dispatch to one method by name (``linrfm``, ``gd``, ``als``, ``softimpute``)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    return METHODS[method](Y, mask, **kwargs)
