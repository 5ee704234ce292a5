"""Atomic solver checkpoints in a zarr v3 group.

State = named numpy arrays + JSON attributes. A save writes a complete new group next to the old one
(``PATH.tmp``), then swaps directories (old → ``PATH.old``, tmp → PATH, old removed), so a SIGKILL at
any moment leaves either the previous or the new checkpoint readable. Each checkpoint records the hash
of the configuration that wrote it; loading with another hash raises :class:`CheckpointMismatchError`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointMismatchError", "config_hash", "save_checkpoint", "load_checkpoint"]

FORMAT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """The checkpoint on disk was written by a different solver configuration."""


def config_hash(config: dict[str, Any], *arrays: np.ndarray) -> str:
    """sha256 of a JSON-able configuration plus the bytes of data arrays (labels, indices)."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _recover(path: Path) -> None:
    old = path.with_name(path.name + ".old")
    if not path.exists() and old.exists():
        os.replace(old, path)  # crashed between the two renames: the old one is complete


def save_checkpoint(path: str | os.PathLike, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """Write ``arrays`` and ``attrs`` to the zarr group at ``path`` atomically."""
    import zarr

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    old = path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    g = zarr.open_group(str(tmp), mode="w")
    for name, a in arrays.items():
        g.create_array(name, data=np.ascontiguousarray(a))
    g.attrs.update({"format_version": FORMAT_VERSION, **attrs, "complete": True})
    _recover(path)
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: str | os.PathLike, expected_hash: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Return (arrays, attrs) of the checkpoint at ``path``, None when there is none.

    Raises :class:`CheckpointMismatchError` when it was written by another configuration.
    """
    import zarr

    path = Path(path)
    _recover(path)
    if not path.exists():
        return None
    g = zarr.open_group(str(path), mode="r")
    attrs = dict(g.attrs)
    if not attrs.get("complete"):
        raise CheckpointMismatchError(f"checkpoint {path} is incomplete or not a bigntk checkpoint")
    if attrs.get("config_hash") != expected_hash:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written by a different configuration "
            f"(its hash {str(attrs.get('config_hash'))[:12]}…, this run's {expected_hash[:12]}…: "
            "different data, kernel, seed or solver settings); delete it or choose another checkpoint path"
        )
    arrays = {name: np.asarray(arr[...]) for name, arr in g.arrays()}
    return arrays, attrs
