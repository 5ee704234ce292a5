"""Inpainting methods: each is ``fill(image, observed, **options) -> (completed, info)``.

``image``: float32 (H, W, C) in [0, 1] (grey images arrive with C = 1); ``observed``: bool (H, W).
The returned ``completed`` has the same shape; ``info`` is a JSON-serialisable dict of extras
(kernel store, solver iterations, ...). Observed pixels are restored by the caller.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

__all__ = ["METHODS", "method_fill"]

METHODS = ("cntk", "biharmonic", "dip")


def method_fill(method: str, options: dict[str, Any]) -> Callable[..., tuple]:
    """The ``fill`` function of ``method``; an option it does not take is a ValueError naming those it does."""
    if method == "cntk":
        from .cntk import fill
    elif method == "biharmonic":
        from .biharmonic import fill
    elif method == "dip":
        from .dip import fill
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    known = [name for name in inspect.signature(fill).parameters if name not in ("image", "observed")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method {method!r}; it takes {known}")
    return fill
