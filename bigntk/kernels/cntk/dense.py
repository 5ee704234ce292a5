"""Dense CNTK: the full (H·W, H·W) kernel for any prior, vectorised in torch (no loop over pixels)."""
from __future__ import annotations

from typing import Any, Tuple

import torch

from ...priors.images import prior_covariance
from .layers import Serial

__all__ = ["dense_kernel"]


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
    prior : see :func:`bigntk.priors.images.prior_covariance`
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
