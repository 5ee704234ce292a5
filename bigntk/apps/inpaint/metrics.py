"""Quality metrics (scikit-image) and resource measurement for inpainting reports.

PSNR and SSIM are computed on the **full** image after observed pixels are restored from the
input, with ``data_range=1.0`` (images are in [0, 1]); ``psnr_missing`` is the PSNR over the
missing pixels only (all channels), which is what the method actually predicts.
"""
from __future__ import annotations

import math
import resource
import sys

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["psnr", "ssim", "psnr_missing", "evaluate", "peak_rss_gb"]


def _check(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"truth shape {t.shape} != prediction shape {p.shape}")
    return t, p


def psnr(truth: np.ndarray, pred: np.ndarray) -> float:
    """PSNR in dB over all pixels, data range 1.0."""
    t, p = _check(truth, pred)
    with np.errstate(divide="ignore"):  # identical images: inf, without a warning
        return float(peak_signal_noise_ratio(t, np.clip(p, 0, 1), data_range=1.0))


def ssim(truth: np.ndarray, pred: np.ndarray) -> float:
    """SSIM (scikit-image defaults, 7×7 window), data range 1.0; channel axis 2 for RGB."""
    t, p = _check(truth, pred)
    kw = {"channel_axis": 2} if t.ndim == 3 else {}
    win = min(7, min(t.shape[:2]) // 2 * 2 - 1)  # odd window no larger than the image
    return float(structural_similarity(t, np.clip(p, 0, 1), data_range=1.0, win_size=max(win, 3), **kw))


def psnr_missing(truth: np.ndarray, pred: np.ndarray, observed: np.ndarray) -> float | None:
    """PSNR (dB, data range 1.0) over missing pixels only; None when nothing is missing."""
    t, p = _check(truth, pred)
    miss = ~np.asarray(observed, dtype=bool)
    if not miss.any():
        return None
    mse = float(np.mean((t[miss] - np.clip(p[miss], 0, 1)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def evaluate(truth: np.ndarray, pred: np.ndarray, observed: np.ndarray) -> dict:
    """``{"psnr", "ssim", "psnr_missing"}`` for a completed image against the truth."""
    return {"psnr": psnr(truth, pred), "ssim": ssim(truth, pred),
            "psnr_missing": psnr_missing(truth, pred, observed)}


def peak_rss_gb() -> float | None:
    """Peak resident set size of this process in GB (ru_maxrss; None where unsupported)."""
    try:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (AttributeError, OSError):  # pragma: no cover - non-POSIX
        return None
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # macOS reports bytes, Linux KiB
    return kb * scale / 1e9
