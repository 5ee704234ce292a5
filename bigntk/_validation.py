"""Input validation shared by the estimators (clear errors, scikit-learn style)."""
from __future__ import annotations

import math
from typing import Any, Tuple

import numpy as np

from .backend import to_numpy


def check_matrix_and_mask(Y: Any, mask: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """Validate an (m × n) matrix with an (m × n) boolean observation mask (None: the finite entries).

    Returns (Y as a float numpy array, mask as a bool numpy array). NaN/inf may appear only where
    the mask is False.
    """
    Y = np.asarray(to_numpy(Y))
    if Y.ndim != 2:
        raise ValueError(f"Y must be a 2-D matrix (m × n), got shape {Y.shape}")
    if Y.dtype.kind not in "fiu":
        raise ValueError(f"Y must be numeric, got dtype {Y.dtype}")
    mask = np.isfinite(Y) if mask is None else np.asarray(to_numpy(mask))
    if mask.dtype != np.bool_:
        raise ValueError(f"mask must be boolean (True = observed), got dtype {mask.dtype}; use mask.astype(bool)")
    if mask.shape != Y.shape:
        raise ValueError(f"mask shape {mask.shape} does not match Y shape {Y.shape}")
    if Y.dtype.kind != "f":
        Y = Y.astype(np.float64)
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
