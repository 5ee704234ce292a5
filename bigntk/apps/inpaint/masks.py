"""Deterministic (seeded) masks for experiments: rectangles, strokes, text, random missing.

All return bool arrays of shape (H, W) with **True = observed**; the same arguments and seed
always give the same mask (numpy ``default_rng(seed)``, Pillow drawing with integer geometry).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["random_missing", "rectangles", "strokes", "text_mask", "center_hole", "combine",
           "make_mask", "MASK_KINDS"]

MASK_KINDS = ("rectangles", "strokes", "text", "random", "center")


def random_missing(shape: tuple[int, int], fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """Each pixel missing independently with probability ``fraction``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    return rng.random(shape[:2]) >= fraction


def center_hole(shape: tuple[int, int], side: int) -> np.ndarray:
    """One square hole of ``side`` pixels in the centre."""
    H, W = shape[:2]
    obs = np.ones((H, W), dtype=bool)
    r0, c0 = (H - side) // 2, (W - side) // 2
    obs[max(r0, 0): r0 + side, max(c0, 0): c0 + side] = False
    return obs


def rectangles(shape: tuple[int, int], count: int = 4, min_side: int = 8, max_side: int = 32,
               seed: int = 0) -> np.ndarray:
    """``count`` axis-aligned rectangular holes with sides in [min_side, max_side]."""
    H, W = shape[:2]
    rng = np.random.default_rng(seed)
    obs = np.ones((H, W), dtype=bool)
    for _ in range(count):
        h, w = rng.integers(min_side, max_side + 1, size=2)
        r = rng.integers(0, max(H - h, 1))
        c = rng.integers(0, max(W - w, 1))
        obs[r: r + h, c: c + w] = False
    return obs


def strokes(shape: tuple[int, int], count: int = 6, width: int = 5, vertices: int = 4,
            seed: int = 0) -> np.ndarray:
    """``count`` random polyline scratches of ``width`` pixels."""
    H, W = shape[:2]
    rng = np.random.default_rng(seed)
    canvas = Image.new("L", (W, H), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(count):
        pts = [(int(rng.integers(0, W)), int(rng.integers(0, H))) for _ in range(vertices)]
        draw.line(pts, fill=255, width=int(width), joint="curve")
    return np.asarray(canvas) == 0


def text_mask(shape: tuple[int, int], text: str = "bigntk inpainting", size: int | None = None,
              lines: int = 3, seed: int = 0) -> np.ndarray:
    """Text overlay holes (Pillow's default font, scaled), ``lines`` rows at seeded offsets."""
    H, W = shape[:2]
    rng = np.random.default_rng(seed)
    size = size or max(10, H // 12)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no scalable default font
        font = ImageFont.load_default()
    canvas = Image.new("L", (W, H), 0)
    draw = ImageDraw.Draw(canvas)
    for k in range(lines):
        y = int((k + 0.5) * H / lines - size / 2 + rng.integers(-size // 4, size // 4 + 1))
        x = int(rng.integers(0, max(W // 6, 1)))
        draw.text((x, y), text, fill=255, font=font)
    return np.asarray(canvas) == 0


def combine(*observed: np.ndarray) -> np.ndarray:
    """A pixel is observed only if every mask observes it."""
    out = np.ones_like(observed[0], dtype=bool)
    for m in observed:
        out &= m
    return out


def make_mask(kind: str, shape: tuple[int, int], seed: int = 0, **kw) -> np.ndarray:
    """Dispatch on ``kind`` in :data:`MASK_KINDS` (``random`` takes ``fraction``, ``center`` ``side``)."""
    if kind == "rectangles":
        return rectangles(shape, seed=seed, **kw)
    if kind == "strokes":
        return strokes(shape, seed=seed, **kw)
    if kind == "text":
        return text_mask(shape, seed=seed, **kw)
    if kind == "random":
        return random_missing(shape, seed=seed, **kw)
    if kind == "center":
        return center_hole(shape, **kw)
    raise ValueError(f"unknown mask kind {kind!r}; choose one of {MASK_KINDS}")
