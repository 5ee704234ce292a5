"""Input validation shared by the estimators (clear errors, scikit-learn style)."""
from __future__ import annotations

import math
from typing import Any, Tuple

import numpy as np

from .backend import to_numpy


def check_matrix_and_mask(Y: Any, mask: Any = None, *, zero_one_mask: bool = False,
                          require_observed: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Validate an (m × n) matrix with an (m × n) boolean observation mask (None: the non-NaN entries).

    Returns (Y as a float numpy array, mask as a bool numpy array). NaN/inf may appear only where
    the mask is False. ``zero_one_mask``: also accept a mask of 0/1 numbers; ``require_observed``:
    a mask with no observed entry is an error. The one validation of every completer.
    """
    Y = np.asarray(to_numpy(Y))
    if Y.ndim != 2:
        raise ValueError(f"Y must be a 2-D matrix (m × n), got shape {Y.shape}")
    if Y.dtype.kind not in "fiu":
        raise ValueError(f"Y must be real and numeric, got dtype {Y.dtype}")
    if Y.dtype.kind != "f" or Y.dtype.itemsize > 8:
        with np.errstate(over="ignore"):  # longdouble beyond float64 -> inf, reported below
            Y = Y.astype(np.float64)
    mask = ~np.isnan(Y) if mask is None else np.asarray(to_numpy(mask))
    if mask.shape != Y.shape:
        raise ValueError(f"mask shape {mask.shape} does not match Y shape {Y.shape}")
    if mask.dtype != np.bool_:
        if not (zero_one_mask and mask.dtype.kind in "iuf" and np.isin(mask, (0, 1)).all()):
            raise ValueError(f"mask must be boolean (True = observed), got dtype {mask.dtype}; use mask.astype(bool)")
        mask = mask.astype(bool)
    if require_observed and not mask.any():
        raise ValueError("mask has no observed entry; nothing to complete")
    bad = ~np.isfinite(Y) & mask
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{int(bad.sum())} observed entries are NaN or inf (first at row {i}, column {j})")
    return Y, mask


def check_image_shape(shape: Any) -> Tuple[int, int]:
    """A pair (H, W) of positive integers, or ``ValueError``."""
    try:
        H, W = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a pair (H, W), got {shape!r}") from None
    if H < 1 or W < 1:
        raise ValueError(f"shape must be positive, got {shape!r}")
    return H, W


def check_nonneg(name: str, value: float) -> float:
    """A finite number >= 0."""
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_representable(values: np.ndarray, dtype: Any) -> None:
    """Refuse data the working dtype cannot hold with room for kernel arithmetic (|x|² must be finite)."""
    import torch

    if not values.size:
        return
    big = float(np.abs(values).max())
    limit = math.sqrt(torch.finfo(dtype).max) / 1e3
    if big > limit:
        raise ValueError(f"observed values reach {big:.3g}, beyond what {str(dtype).replace('torch.', '')} "
                         f"computes with safely (|x| ≤ {limit:.3g}); rescale the data or use dtype='float64'")
