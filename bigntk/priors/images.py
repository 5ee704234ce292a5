"""Priors for images treated as matrices: coordinates (meshgrid) and i.i.d. uniform features."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .concrete import ExplicitPrior


def meshgrid(shape: Tuple[int, int]) -> ExplicitPrior:
    """Prior over the H·W pixels of an image: column (i, j) = (i / H, j / W, 1).

    The constant feature keeps every column non-zero (so normalisation is defined at the origin).
    Columns are in row-major pixel order; shape (3, H·W).
    """
    H, W = (int(s) for s in shape)
    if H < 1 or W < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    ii, jj = np.meshgrid(np.arange(H) / H, np.arange(W) / W, indexing="ij")
    return ExplicitPrior(np.stack([ii.ravel(), jj.ravel(), np.ones(H * W)]))


def uniform(p: int, n: int, seed: int = 0, high: float = 0.1) -> ExplicitPrior:
    """I.i.d. U[0, high] features: a (p, n) random prior (the paper's images use U[0, 0.1])."""
    if p < 1 or n < 0:
        raise ValueError(f"need p >= 1 and n >= 0, got p={p}, n={n}")
    rng = np.random.default_rng(seed)
    return ExplicitPrior(rng.uniform(0.0, high, size=(p, n)))
