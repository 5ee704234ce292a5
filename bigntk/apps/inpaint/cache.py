"""The kernel cache of inpainting: where kernel stores live, what they hold, and a size cap.

Directory: ``cache_dir=`` > ``$BIGNTK_KERNEL_CACHE`` > ``platformdirs.user_cache_dir("bigntk")/kernels``.
Entries are zarr stores: ``cntk-<key>.zarr`` (exact compact / window CNTKs, ``bigntk.kernels.cntk.store``;
the window form is one store per architecture, prior and dtype, serving every image size) and
``dense-<key>.zarr`` (dense kernels of non-stationary priors, small images). Beside them are the hidden
sidecars of ``bigntk.persist``: ``.<name>.lock`` (writer's lock), ``.<name>.partial`` (a build in
progress or interrupted; the next build resumes it) and ``.<name>.old`` / ``.<name>.tmp-*``.

Size cap: after a new entry is written, the least recently used entries are removed until the cache
holds at most ``max_bytes`` (``$BIGNTK_CACHE_MAX``, e.g. ``20GB``; default :data:`DEFAULT_MAX_BYTES`).
An entry's use time is the modification time of its directory, renewed on every use. Entries another
process is writing (their lock is held) are never removed.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from ... import persist
from ...backend import parse_bytes

__all__ = ["kernel_cache_dir", "touch", "entries", "clean", "enforce_cap", "max_cache_bytes", "DEFAULT_MAX_BYTES"]

#: default cap on the cache's size (bytes)
DEFAULT_MAX_BYTES = 20 * 10**9
_PREFIXES = ("cntk-", "dense-")


def kernel_cache_dir(cache_dir: str | os.PathLike | None = None, *, create: bool = True) -> Path:
    """Directory of cached kernel stores: argument > ``$BIGNTK_KERNEL_CACHE`` > user cache dir."""
    if cache_dir is None:
        cache_dir = os.environ.get("BIGNTK_KERNEL_CACHE")
    if cache_dir is None:
        import platformdirs

        cache_dir = Path(platformdirs.user_cache_dir("bigntk")) / "kernels"
    path = Path(cache_dir)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def max_cache_bytes(max_bytes: int | str | None = None) -> int:
    """The size cap: argument > ``$BIGNTK_CACHE_MAX`` > :data:`DEFAULT_MAX_BYTES`."""
    value = max_bytes if max_bytes is not None else os.environ.get("BIGNTK_CACHE_MAX") or DEFAULT_MAX_BYTES
    return parse_bytes(value)


def touch(path: str | os.PathLike) -> None:
    """Mark an entry as used now (its directory's modification time)."""
    try:
        os.utime(path)
    except OSError:  # pragma: no cover - removed meanwhile by another process's clean
        pass


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _describe(path: Path) -> dict[str, Any]:
    """What an entry holds, read from its attributes without opening arrays."""
    import json

    info: dict[str, Any] = {"path": str(path), "name": path.name, "bytes": _size(path),
                            "last_used": path.stat().st_mtime, "kind": persist.store_kind(path)}
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        attrs = {}
    info.update({k: attrs.get(k) for k in ("form", "shape", "dtype", "period", "complete", "format_version")})
    if attrs.get("arch"):
        layers = [d["layer"] for d in attrs["arch"]]
        info["arch"] = f"{layers.count('Down')} levels, {len(layers)} layers"
    return info


def entries(cache_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The cache's entries (most recently used first) and its leftovers (``"leftover": True``: partial or
    old copies of a store, with ``"in_use"`` when another process is writing them)."""
    root = kernel_cache_dir(cache_dir, create=False)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        if p.name.startswith(_PREFIXES) and p.suffix == ".zarr":
            out.append(_describe(p) | {"leftover": False, "in_use": persist.is_locked(p)})
        elif p.name.startswith(tuple("." + x for x in _PREFIXES)) and not p.name.endswith(".lock"):
            out.append({"path": str(p), "name": p.name, "bytes": _size(p), "last_used": p.stat().st_mtime,
                        "leftover": True, "in_use": persist.is_locked(_store_of(p))})
    return sorted(out, key=lambda e: -e["last_used"])


def _store_of(sidecar: Path) -> Path:
    """The store a sidecar belongs to: ``.cntk-x.zarr.partial`` -> ``cntk-x.zarr``."""
    return sidecar.with_name(sidecar.name[1:].split(".zarr")[0] + ".zarr")


def _remove(entry: dict[str, Any]) -> bool:
    """Remove an entry under its writer's lock (skipped when another process holds it).

    Lock files stay (they are empty): removing one another process is opening would give two writers.
    """
    p = Path(entry["path"])
    try:
        with persist.exclusive(_store_of(p) if entry["leftover"] else p):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
    except persist.StoreBusyError:
        return False
    return True


def clean(cache_dir: str | os.PathLike | None = None, *, max_bytes: int | str | None = None,
          older_than_days: float | None = None, everything: bool = False) -> list[dict[str, Any]]:
    """Remove entries; returns those removed.

    Always removes leftovers nobody is writing. Then: ``everything`` removes every entry;
    ``older_than_days`` those unused for that long; ``max_bytes`` the least recently used until the
    cache fits.
    """
    found = entries(cache_dir)
    removed = [e for e in found if e["leftover"] and not e["in_use"] and _remove(e)]
    live = [e for e in found if not e["leftover"]]
    now = time.time()
    doomed = [e for e in live if everything or (older_than_days is not None
                                                 and now - e["last_used"] > older_than_days * 86400)]
    removed += [e for e in doomed if _remove(e)]
    if max_bytes is not None:
        kept = [e for e in live if e not in doomed]
        removed += _evict(kept, parse_bytes(max_bytes))
    return removed


def _evict(live: list[dict[str, Any]], cap: int, keep: Path | None = None) -> list[dict[str, Any]]:
    """Remove least recently used entries of ``live`` (most recent first) until they fit ``cap``."""
    total, removed = sum(e["bytes"] for e in live), []
    for e in reversed(live):
        if total <= cap:
            break
        if keep is not None and Path(e["path"]) == Path(keep):
            continue
        if _remove(e):
            total -= e["bytes"]
            removed.append(e)
    return removed


def enforce_cap(cache_dir: str | os.PathLike | None = None, *, keep: str | os.PathLike | None = None,
                max_bytes: int | str | None = None) -> list[dict[str, Any]]:
    """Apply the size cap (module docstring), never removing ``keep`` (the entry just used)."""
    live = [e for e in entries(cache_dir) if not e["leftover"]]
    return _evict(live, max_cache_bytes(max_bytes), Path(keep) if keep is not None else None)
