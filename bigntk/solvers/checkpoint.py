"""Atomic solver checkpoints in a zarr v3 group.

State = named numpy arrays + JSON attributes. A save writes a complete new group next to the old one,
then swaps directories (``bigntk.persist``), so a SIGKILL at any moment leaves either the previous or the
new checkpoint readable. Each checkpoint records the hash of the configuration that wrote it (loading
with another hash raises :class:`CheckpointMismatchError`) and a checksum of its arrays, confirmed on
every load: a damaged checkpoint (a missing or altered chunk) is an error, never zeros.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .. import persist

__all__ = ["CheckpointMismatchError", "config_hash", "save_checkpoint", "load_checkpoint"]

FORMAT = "bigntk-checkpoint"
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


def save_checkpoint(path: str | os.PathLike, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """Write ``arrays`` and ``attrs`` to the zarr group at ``path`` atomically."""
    import zarr

    path = Path(path)
    persist.restore_interrupted_swap(path)
    tmp = persist.sidecar(path, ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        persist.create_array(g, name, a, dims=[f"{name}_{i}" for i in range(a.ndim)])
    g.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, **attrs,
                    "checksum": persist.checksum(arrays), "complete": True})
    persist.swap_into_place(tmp, path)


def load_checkpoint(path: str | os.PathLike, expected_hash: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Return (arrays, attrs) of the checkpoint at ``path``, None when there is none.

    Raises :class:`CheckpointMismatchError` when it was written by another configuration and
    :class:`bigntk.persist.StoreError` when it is damaged.
    """
    import zarr

    path = Path(path)
    persist.restore_interrupted_swap(path)
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
    arrays = {}
    for name, arr in g.arrays():
        persist.require_chunks(arr, str(path))
        arrays[name] = np.asarray(arr[...])
    if "checksum" in attrs and persist.checksum(arrays) != attrs["checksum"]:
        raise persist.StoreError(f"checkpoint {path} is damaged (checksum mismatch); delete it to start over")
    return arrays, attrs
