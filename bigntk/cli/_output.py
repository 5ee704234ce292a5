"""The completed matrix of ``bigntk complete`` and ``bigntk lowrank``: ``.npy``, or with an ``--out``
ending in ``.zarr`` a zarr v3 group that ``xarray.open_zarr`` opens as a Dataset: ``completed``
(float64) and ``observed`` (bool), dims ("row", "column"), group attributes recording the method,
its parameters and the fit. Written beside the target and renamed into place, so a failed write
leaves the previous output (or none), never a partial one.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DIMS", "FORMAT", "write_zarr_group", "save_output"]

DIMS = ("row", "column")
#: the ``format`` attribute of a ``--out x.zarr`` group (``bigntk.persist``): only such a group is replaced
FORMAT = "bigntk-completion"


def write_zarr_group(path: Path, completed: np.ndarray, observed: np.ndarray, attrs: dict[str, Any]) -> None:
    """The completion as a zarr v3 group: ``completed`` (m, n) float64 and ``observed`` (m, n)
    bool with zarr v3 ``dimension_names`` ("row", "column"), ``attrs`` on the group, metadata
    consolidated (what ``xarray.open_zarr`` looks for first)."""
    import zarr

    from .. import persist

    chunks = tuple(min(s, 1024) for s in completed.shape)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name, data in (("completed", completed.astype(np.float64)), ("observed", observed.astype(bool))):
        persist.create_array(group, name, data, dims=DIMS, chunks=chunks)
    group.attrs.update({"format": FORMAT, "format_version": 1, **attrs, "complete": True})
    with warnings.catch_warnings():  # "consolidated metadata is not part of the v3 spec (yet)"
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


def save_output(path: Path, completed: np.ndarray, observed: np.ndarray, attrs: dict[str, Any]) -> None:
    """Write the completion atomically: a zarr group when ``path`` ends in ``.zarr``, else .npy."""
    from ..persist import atomic_output

    with atomic_output(path) as tmp:
        if path.suffix == ".zarr":
            write_zarr_group(tmp, completed, observed, attrs)
        else:
            with open(tmp, "wb") as f:
                np.save(f, completed)
