"""Plots for interpretability: the CNTK row of one pixel as an image (paper Fig. 4)."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch

from .backend import to_numpy

__all__ = ["kernel_heatmap"]


def _row_image(kernel: Any, pixel: Tuple[int, int], image_shape: Optional[Tuple[int, int]]) -> np.ndarray:
    i, j = (int(p) for p in pixel)
    if hasattr(kernel, "rows") and hasattr(kernel, "image_shape"):
        H, W = kernel.image_shape
        if not (0 <= i < H and 0 <= j < W):
            raise ValueError(f"pixel {pixel} outside the {H}x{W} image")
        return to_numpy(kernel.rows([i * W + j])[0]).astype(np.float64).reshape(H, W)
    K = kernel if isinstance(kernel, torch.Tensor) else np.asarray(kernel)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"kernel must be a kernel object or a square (H·W, H·W) matrix, got shape {tuple(K.shape)}")
    n = K.shape[0]
    if image_shape is None:
        side = int(round(np.sqrt(n)))
        if side * side != n:
            raise ValueError("pass image_shape=(H, W) for a non-square image")
        image_shape = (side, side)
    H, W = image_shape
    if H * W != n or not (0 <= i < H and 0 <= j < W):
        raise ValueError(f"pixel {pixel} / image_shape {image_shape} do not fit a kernel of size {n}")
    return to_numpy(K[i * W + j]).astype(np.float64).reshape(H, W)


def kernel_heatmap(
    kernel: Any,
    pixel: Tuple[int, int] = (0, 0),
    *,
    image_shape: Optional[Tuple[int, int]] = None,
    subtract_far: bool = False,
    ax: Any = None,
    as_array: bool = False,
    cmap: str = "viridis",
    title: Optional[str] = None,
):
    """Kernel row of ``pixel`` = (i, j) shown as an H×W image: K((i, j), (k, l)) at row k, column l.

    The figure labels its axes (row k / column l, in pixels) and its colour bar (the kernel value,
    ``− c_far`` when subtracted); the pixel itself is marked with a red cross.

    kernel : a CompactKernel / WindowKernel (anything with ``rows`` and ``image_shape``) or a dense
             (H·W, H·W) matrix (then ``image_shape`` or a square image).
    subtract_far : show K − c_far (the window form's constant), which makes the local structure visible.
    as_array : return the (H, W) float64 array instead of a matplotlib Figure.
    """
    img = _row_image(kernel, pixel, image_shape)
    c_far = getattr(kernel, "c_far", None)
    if subtract_far:
        img = img - float(c_far if c_far is not None else img.min())
    if as_array:
        return img
    if ax is None:  # a pyplot-free Figure: works headless, no global state
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.5, 4))
        ax = fig.subplots()
    else:
        fig = ax.figure
    i, j = (int(p) for p in pixel)
    im = ax.imshow(img, cmap=cmap, interpolation="nearest")
    ax.plot([j], [i], marker="+", color="red", markersize=8)
    ax.set_title(title or f"CNTK row at pixel ({i}, {j})")
    ax.set_xlabel("column l (pixels)")
    ax.set_ylabel("row k (pixels)")
    what = "K((i, j), (k, l))"
    if subtract_far:
        what += " − c_far" if c_far is not None else " − min"
    fig.colorbar(im, ax=ax, fraction=0.046).set_label(what)
    return fig
