"""Inpainting methods: each is ``fill(image, observed, **options) -> (completed, info)``.

``image``: float32 (H, W, C) in [0, 1] (grey images arrive with C = 1); ``observed``: bool (H, W).
The returned ``completed`` has the same shape; ``info`` is a JSON-serialisable dict of extras
(kernel store, solver iterations, ...). Observed pixels are restored by the caller.
"""
from __future__ import annotations

METHODS = ("cntk", "biharmonic", "dip")
