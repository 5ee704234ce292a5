"""Dense CNTK: the full (H·W, H·W) kernel for any prior, vectorised in torch (no loop over pixels)."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch

from ...backend import resolve_device, resolve_dtype, to_tensor
from .layers import Serial, check_shape

__all__ = ["dense_kernel", "prior_covariance", "STATIONARY", "stationary_values"]

#: Expected Gram of i.i.d. U[0, 0.1] channels: E[z²] = 0.01/3, E[z z′] = 0.05².
STATIONARY = (1.0 / 300.0, 1.0 / 400.0)


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
    H, W = check_shape(shape)
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
        from ...priors import meshgrid

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


def dense_kernel(
    arch: Serial,
    shape: Tuple[int, int],
    prior: Any = "stationary",
    *,
    device=None,
    dtype=None,
    return_nngp: bool = False,
) -> torch.Tensor:
    """Dense CNTK of ``arch`` on an H×W image.

    Parameters
    ----------
    arch : Serial (e.g. ``dip(levels=3)``)
    shape : (H, W), divisible by 2^(number of Down layers)
    prior : see :func:`prior_covariance`
    return_nngp : also return the NNGP covariance Σ of the output (same shape)

    Returns
    -------
    K : tensor (H_out·W_out, H_out·W_out), rows/cols = row-major output pixels. Memory: 4·(HW)² bytes
    in float32 plus about three times that in work space (128×128: ~1 GiB each).
    """
    if not isinstance(arch, Serial):
        raise TypeError(f"arch must be a Serial architecture (e.g. dip(3)), got {type(arch).__name__}")
    Ho, Wo = arch.output_shape(shape)
    S = prior_covariance(prior, shape, device=device, dtype=dtype).permute(0, 2, 1, 3).contiguous()
    T = None  # internal layout (h, h, w, w): see layers.py
    last = arch.final_conv_index()
    for k, layer in enumerate(arch):
        S, T = layer.dense(S, T, last=(k == last and not return_nngp))
    n = Ho * Wo
    public = lambda X: X.permute(0, 2, 1, 3).reshape(n, n)
    K = public(T)
    return (K, public(S)) if return_nngp else K
