"""Plots for interpretability: the CNTK row of one pixel as an image (paper Fig. 4), and held-out CMap
predictions against measurements with per-line metrics."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .backend import to_numpy

__all__ = ["kernel_heatmap", "cmap_predictions_figure"]


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


def _scatter(ax: Any, predictions: Dict[str, dict], reports: Dict[str, dict], points: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lo, hi = np.inf, -np.inf
    for method, pr in predictions.items():
        x, y = np.asarray(pr["measured"]).ravel(), np.asarray(pr["predicted"]).ravel()
        pick = rng.choice(x.size, size=min(points, x.size), replace=False)
        label = f"{reports[method]['method']} (r = {reports[method]['pearson_r']:.3f})"
        ax.scatter(x[pick], y[pick], s=3, alpha=0.4, label=label, rasterized=True)
        lo, hi = min(lo, x[pick].min(), y[pick].min()), max(hi, x[pick].max(), y[pick].max())
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="predicted = measured")
    ax.set_xlabel("measured value (held-out profile, gene)")
    ax.set_ylabel("predicted value")
    ax.set_title("held-out predictions")
    ax.legend(fontsize=8, markerscale=3)


def _per_line(ax: Any, reports: Dict[str, dict], metric: str) -> None:
    lines = sorted({name for rep in reports.values() for name in rep["per_line"]})
    width = 0.8 / max(len(reports), 1)
    for k, rep in enumerate(reports.values()):
        values = [rep["per_line"].get(name, {}).get(metric, np.nan) for name in lines]
        ax.bar(np.arange(len(lines)) + (k - (len(reports) - 1) / 2) * width, values, width, label=rep["method"])
    ax.set_xticks(np.arange(len(lines)), lines, rotation=45, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("cell line (evaluated)")
    ax.set_ylabel({"mean_r2": "mean R² over held-out profiles"}.get(metric, metric))
    ax.set_title("per-line metric")
    ax.margins(y=0.3)  # room above the bars for the legend
    ax.legend(fontsize=8, ncol=len(reports), loc="upper left")


def cmap_predictions_figure(predictions: Dict[str, dict], reports: Dict[str, dict], *, metric: str = "mean_r2",
                            points: int = 4000, seed: int = 0):
    """Held-out CMap predictions of several methods: a predicted-against-measured scatter (``points``
    random entries per method, the identity line, each method's pooled Pearson r) and ``metric`` per
    evaluated line per method (bars).

    predictions : {method: {"predicted": (n, G), "measured": (n, G), ...}}, as returned by
        ``cross_validate(..., return_predictions=True)``; reports : {method: its report}.
    Returns a matplotlib Figure (pyplot-free: headless, no global state).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    _scatter(left, predictions, reports, points, seed)
    _per_line(right, reports, metric)
    fig.tight_layout()
    return fig
