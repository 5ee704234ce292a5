"""Progress bars: one policy for every long computation.

``progress=True`` (the default of the library's functions) shows a tqdm bar when stderr is a terminal
and nothing in logs or pipes (no escape codes in non-interactive output); ``progress=False`` (CLI
``--quiet``) never shows one; ``$BIGNTK_PROGRESS=1`` forces bars on, ``0`` off. Bars count real work
(blocks, steps, profiles read, splits) and show an ETA; a loop that stops at a tolerance (CG, the
low-rank iterations) counts its iterations without a total, since its cap is rarely reached. Every
bar of the package is made here (``tests/test_progress.py`` checks that no other module calls tqdm).
"""
from __future__ import annotations

import os
from typing import Any

__all__ = ["bar", "enabled"]


def enabled(progress: bool | None) -> bool | None:
    """tqdm's ``disable`` argument, negated: False = off, None = only on a terminal, True = on."""
    env = os.environ.get("BIGNTK_PROGRESS")
    if env in ("0", "1"):
        return env == "1"
    if progress is False:
        return False
    return None


def bar(total: int | None = None, *, desc: str, progress: bool | None = True, **kwargs: Any):
    """A tqdm bar following the policy above (``kwargs`` go to tqdm: iterable, unit, initial, leave, …)."""
    from tqdm.auto import tqdm

    on = enabled(progress)
    return tqdm(total=total, desc=desc, disable=None if on is None else not on, **kwargs)
