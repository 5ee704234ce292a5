"""Padding to a multiple of 2^levels, the open boundary, and the paper's minimum-depth rule.

An encoder–decoder with ``levels`` down/up-sampling stages needs H and W divisible by
2^levels. Other sizes are **padded** at the bottom/right to the next multiple and the result is
cropped back; padded pixels are marked *missing* (they carry no new data, and the model fills
them like any other missing pixel).

Boundary. The networks use circular padding, so on the image grid itself the kernel is periodic:
the left border is the right border's neighbour, and a hole touching one border is filled partly
from the opposite one. ``boundary="open"`` (the default) pads by at least 2^levels − 1 further
unobserved pixels per axis (:func:`boundary_margin`): with nearest upsampling the CNTK between two
pixels farther apart than 2^levels − 1 is the far-field constant, the same for every such pair, so
no observed pixel of one border reaches the other except through that constant. ``"periodic"``
pads only to the multiple (the image wraps around). The open boundary costs the extra pixels in
every kernel product (448 × 704 at 6 levels: 512 × 768, 1.25× the pixels).

Minimum depth (Radhakrishnan et al. 2022): a missing square of side m needs at least
⌊log2(m + 1)⌋ levels so that the receptive field spans the hole. The largest hole is measured
as the largest missing square, estimated from the chessboard distance transform: a missing
pixel at chessboard distance d from the nearest observed pixel lies in a missing square of side
≥ 2d − 1 (we use that lower bound, so the warning is never spurious).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import ndimage

__all__ = ["BOUNDARIES", "boundary_margin", "padded_shape", "pad_reflect", "crop", "largest_hole", "min_levels",
           "check_depth", "check_levels", "check_padded_size", "DepthWarning"]

#: bytes per padded pixel and channel the pipeline holds at once (padded image, zeroed copy, result)
PADDED_BYTES_PER_VALUE = 16

#: boundary conditions of the padded grid (module docstring)
BOUNDARIES = ("open", "periodic")


class DepthWarning(UserWarning):
    """Too few levels for the largest hole (paper's minimum-depth rule)."""


def boundary_margin(levels: int, boundary: str = "open") -> int:
    """Unobserved pixels added per axis beyond the image before rounding up: 2**levels − 1 (open) or 0."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"unknown boundary {boundary!r}; choose one of {BOUNDARIES}")
    return 2 ** int(levels) - 1 if boundary == "open" else 0


def check_levels(levels: int) -> int:
    """``levels`` of an encoder–decoder: an integer >= 1 (one down/up-sampling stage at least)."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1 (one down/up-sampling stage at least), got {levels!r}")
    return int(levels)


def check_padded_size(shape: tuple[int, int], channels: int, levels: int, boundary: str, free: int) -> None:
    """Refuse, before allocating, a padding that ``free`` bytes of memory cannot hold."""
    Hp, Wp = padded_shape(shape, levels, boundary_margin(levels, boundary))
    need = Hp * Wp * max(channels, 1) * PADDED_BYTES_PER_VALUE
    if need > free:
        raise MemoryError(f"levels={levels} pads the {shape[0]}x{shape[1]} image to {Hp}x{Wp} pixels, which needs "
                          f"about {need / 1e9:,.1f} GB of memory ({free / 1e9:,.1f} GB free); use fewer levels "
                          "(a hole of side m needs floor(log2(m + 1))) or boundary='periodic'")


def padded_shape(shape: tuple[int, int], levels: int, margin: int = 0) -> tuple[int, int]:
    """(H', W'): the smallest multiples of 2**levels that are ≥ (H + margin, W + margin)."""
    step = 2 ** int(levels)
    return tuple(int(math.ceil((s + margin) / step) * step) for s in shape[:2])


def pad_reflect(img: np.ndarray, observed: np.ndarray, levels: int, margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reflect-pad image (H, W[, C]) and mask (H, W) to :func:`padded_shape` (``margin``: see there).

    Padding goes at the bottom and right; padded mask entries are False (missing).
    Returns ``(img_padded, observed_padded)``.
    """
    H, W = observed.shape
    Hp, Wp = padded_shape((H, W), levels, margin)
    widths = [(0, Hp - H), (0, Wp - W)] + [(0, 0)] * (img.ndim - 2)
    # np.pad's "reflect" repeats the reflection when the pad exceeds the axis length
    img_p = np.pad(img, widths, mode="reflect") if (Hp, Wp) != (H, W) else img
    obs_p = np.zeros((Hp, Wp), dtype=bool)
    obs_p[:H, :W] = observed
    return img_p, obs_p


def crop(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo :func:`pad_reflect`: keep the top-left (H, W)."""
    return img[: shape[0], : shape[1]]


def largest_hole(observed: np.ndarray) -> int:
    """Side m of the largest missing square (lower bound 2d − 1, see module doc); 0 if none."""
    missing = ~np.asarray(observed, dtype=bool)
    if not missing.any():
        return 0
    if missing.all():
        return int(min(missing.shape))
    d = ndimage.distance_transform_cdt(missing, metric="chessboard")
    return int(2 * d.max() - 1)


def min_levels(hole_side: int) -> int:
    """Paper's rule: a hole of side m needs ⌊log2(m + 1)⌋ levels."""
    return int(math.floor(math.log2(hole_side + 1))) if hole_side > 0 else 0


def check_depth(observed: np.ndarray, levels: int, warn: bool = True) -> dict:
    """Check ``levels`` against the largest hole; warn (DepthWarning) when it is too shallow.

    Returns ``{"largest_hole": m, "min_levels": L, "levels_ok": bool}``.
    """
    m = largest_hole(observed)
    need = min_levels(m)
    ok = levels >= need
    if warn and not ok:
        warnings.warn(
            f"largest hole is about {m}x{m} pixels; the minimum-depth rule needs levels >= {need} "
            f"(got {levels}); use levels={need} or more", DepthWarning, stacklevel=2)
    return {"largest_hole": m, "min_levels": need, "levels_ok": bool(ok)}
