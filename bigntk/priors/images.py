"""Priors for images treated as matrices: coordinates (meshgrid), i.i.d. uniform features, and the
input covariance Σ⁰ of the CNTK image prior (stationary, identity, explicit features or a Prior)."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch

from .._validation import check_image_shape
from ..backend import resolve_device, resolve_dtype, to_tensor
from .concrete import ExplicitPrior

__all__ = ["meshgrid", "uniform", "STATIONARY", "stationary_values", "prior_covariance"]

#: Expected Gram of i.i.d. U[0, 0.1] channels: E[z²] = 0.01/3, E[z z′] = 0.05².
STATIONARY = (1.0 / 300.0, 1.0 / 400.0)


def meshgrid(shape: Tuple[int, int]) -> ExplicitPrior:
    """Prior over the H·W pixels of an image: column (i, j) = (i / H, j / W, 1).

    The constant feature keeps every column non-zero (so normalisation is defined at the origin).
    Columns are in row-major pixel order; shape (3, H·W).
    """
    H, W = check_image_shape(shape)
    ii, jj = np.meshgrid(np.arange(H) / H, np.arange(W) / W, indexing="ij")
    return ExplicitPrior(np.stack([ii.ravel(), jj.ravel(), np.ones(H * W)]))


def uniform(p: int, n: int, seed: int = 0, high: float = 0.1) -> ExplicitPrior:
    """I.i.d. U[0, high] features: a (p, n) random prior (the paper's images use U[0, 0.1])."""
    if p < 1 or n < 0:
        raise ValueError(f"need p >= 1 and n >= 0, got p={p}, n={n}")
    rng = np.random.default_rng(seed)
    return ExplicitPrior(rng.uniform(0.0, high, size=(p, n)))


def stationary_values(prior: Any) -> Optional[Tuple[float, float]]:
    """(diagonal, off-diagonal) of a δ-structured stationary prior, or None for other priors.

    "stationary" → (1/300, 1/400); "identity" → (1, 0); a pair (diag, off) is taken as given.
    """
    if isinstance(prior, str):
        if prior == "stationary":
            return STATIONARY
        if prior == "identity":
            return (1.0, 0.0)
        return None
    if isinstance(prior, tuple) and len(prior) == 2 and all(isinstance(x, (int, float)) for x in prior):
        diag, off = float(prior[0]), float(prior[1])
        if not (diag >= abs(off)):
            raise ValueError(f"stationary prior needs diag >= |off| (PSD), got {prior}")
        return diag, off
    return None


def prior_covariance(prior: Any, shape: Tuple[int, int], *, device=None, dtype=None) -> torch.Tensor:
    """Input covariance Σ⁰ of shape (H, W, H, W) for a prior.

    prior : "stationary" | "identity" | "meshgrid" | (diag, off) | array Z of shape (C, H, W)
            | a ``bigntk.priors`` Prior over the H·W pixels (its raw, un-normalised Gram is used).
    Σ⁰(p, p′) = Σ_c Z_c[p] Z_c[p′] for explicit features.
    """
    H, W = check_image_shape(shape)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    n = H * W
    vals = stationary_values(prior)
    if vals is not None:
        diag, off = vals
        S = torch.full((n, n), off, device=dev, dtype=dt)
        S.diagonal().fill_(diag)
        return S.reshape(H, W, H, W)
    if isinstance(prior, str):
        if prior != "meshgrid":
            raise ValueError(f"unknown prior {prior!r}; use 'stationary', 'identity', 'meshgrid', Z or a Prior")
        prior = meshgrid((H, W))
    if hasattr(prior, "raw_gram"):
        if getattr(prior, "n", n) != n:
            raise ValueError(f"prior describes {prior.n} columns but the image has H·W = {n} pixels")
        G = prior.raw_gram(device=dev, dtype=torch.float64).to(dt)
        return G.reshape(H, W, H, W)
    Z = to_tensor(prior, dev, torch.float64)
    if Z.dim() == 2:
        Z = Z[None]
    if Z.dim() != 3 or tuple(Z.shape[1:]) != (H, W):
        raise ValueError(f"explicit prior Z must have shape (C, {H}, {W}), got {tuple(Z.shape)}")
    Zf = Z.reshape(Z.shape[0], n)
    return (Zf.T @ Zf).to(dt).reshape(H, W, H, W)
