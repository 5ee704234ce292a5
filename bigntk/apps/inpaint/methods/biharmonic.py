"""Baseline: scikit-image's biharmonic inpainting (``skimage.restoration.inpaint_biharmonic``)."""
from __future__ import annotations

import numpy as np
from skimage.restoration import inpaint_biharmonic

__all__ = ["fill"]


def fill(image: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, dict]:
    """Biharmonic fill of the missing pixels of ``image`` (H, W, C); ``observed`` (H, W) bool."""
    missing = ~observed
    if not missing.any():
        return image.copy(), {}
    out = inpaint_biharmonic(image.astype(np.float64), missing, channel_axis=-1)
    return out.astype(np.float32), {}
