"""Dask block builder: kernel tiles described as a task graph, built from an operator's compact sources.

A :class:`~bigntk.operators.KernelOperator` holds only compact sources (cached prior columns, small
group Grams, a zarr-backed compact CNTK, a window form). :func:`kernel_tiles` describes K[rows, cols] as
a ``dask.array.Array`` whose every block is one task ``operator.block(rows_i, cols_j)``; nothing is
computed until asked. The same description

* runs threaded on one machine (``.compute()``, dask's default scheduler),
* spreads over ``dask.distributed`` workers (the operator is pickled once per worker),
* or is pulled tile by tile by a solver (:func:`iter_tiles`).

Tile sizes come from a memory budget (bytes; default: a quarter of free RAM, or of free GPU memory
for a CUDA operator — see :func:`tile_plan`), never from constants.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from .. import backend
from ..operators.base import KernelOperator, as_index, default_memory_budget, tile_shape

__all__ = ["tile_plan", "kernel_tiles", "matmul_graph", "iter_tiles"]


def tile_plan(n_rows: int, n_cols: int, *, memory_budget: int | None = None, device=None, itemsize: int = 4,
              n_rhs: int = 1, workers: int = 1) -> tuple[int, int]:
    """(row_chunk, col_chunk) so that ``workers`` tiles in flight fit ``memory_budget`` bytes.

    Default budget: a quarter of :func:`bigntk.backend.free_memory_bytes` for ``device``.
    """
    dev = backend.resolve_device(device)
    budget = int(memory_budget) if memory_budget else default_memory_budget(dev)
    return tile_shape(n_rows, n_cols, n_rhs, max(budget // max(workers, 1), 1), itemsize)


def _chunks(n: int, size: int) -> tuple[int, ...]:
    full, rest = divmod(n, size)
    return (size,) * full + ((rest,) if rest else ())


def _tile(operator: KernelOperator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return backend.to_numpy(operator.block(rows, cols))


def kernel_tiles(operator: KernelOperator, rows: Any = None, cols: Any = None, *,
                 memory_budget: int | None = None, workers: int = 1):
    """K[rows, cols] as a lazy ``dask.array.Array`` (numpy blocks, operator dtype).

    Each block is a task calling ``operator.block`` on a contiguous slice of ``rows`` / ``cols``.
    """
    import dask.array as da
    from dask.base import tokenize

    r = backend.to_numpy(as_index(rows, operator.n, torch.device("cpu")))
    c = backend.to_numpy(as_index(cols, operator.n, torch.device("cpu")))
    itemsize = torch.finfo(operator.dtype).bits // 8
    budget = memory_budget or operator.memory_budget
    rt, ct = tile_plan(len(r), len(c), memory_budget=budget, device=operator.device, itemsize=itemsize,
                       workers=workers)
    rch, cch = _chunks(len(r), rt), _chunks(len(c), ct)
    name = "kernel-tiles-" + tokenize(repr(operator), operator.fingerprint(), r, c, rt, ct)
    r_off, c_off = np.cumsum((0,) + rch), np.cumsum((0,) + cch)
    dsk = {(name, i, j): (_tile, operator, r[r_off[i]:r_off[i + 1]], c[c_off[j]:c_off[j + 1]])
           for i in range(len(rch)) for j in range(len(cch))}
    dtype = np.float32 if operator.dtype == torch.float32 else np.float64
    return da.Array(dsk, name, (rch, cch), dtype=dtype)


def matmul_graph(operator: KernelOperator, V: Any, rows: Any = None, cols: Any = None, *,
                 memory_budget: int | None = None, workers: int = 1):
    """K[rows, cols] @ V as a lazy dask array ((len(rows), l), float64 accumulation of tile products)."""
    import dask.array as da

    K = kernel_tiles(operator, rows, cols, memory_budget=memory_budget, workers=workers)
    Vn = np.asarray(backend.to_numpy(V), dtype=np.float64)
    if Vn.ndim == 1:
        Vn = Vn[:, None]
    if Vn.shape[0] != K.shape[1]:
        raise ValueError(f"V has {Vn.shape[0]} rows but {K.shape[1]} columns were selected")
    Vd = da.from_array(Vn, chunks=(K.chunks[1], Vn.shape[1]))
    return K.astype(np.float64) @ Vd


def iter_tiles(operator: KernelOperator, rows: Any = None, cols: Any = None, *,
               memory_budget: int | None = None) -> Iterator[tuple[slice, slice, torch.Tensor]]:
    """Pull tiles one at a time: yields (row_slice, col_slice, tile on the operator's device)."""
    r = as_index(rows, operator.n, operator.device)
    c = as_index(cols, operator.n, operator.device)
    itemsize = torch.finfo(operator.dtype).bits // 8
    rt, ct = tile_plan(r.numel(), c.numel(), memory_budget=memory_budget or operator.memory_budget,
                       device=operator.device, itemsize=itemsize)
    for i in range(0, r.numel(), rt):
        for j in range(0, c.numel(), ct):
            yield slice(i, i + rt), slice(j, j + ct), operator.block(r[i:i + rt], c[j:j + ct])
