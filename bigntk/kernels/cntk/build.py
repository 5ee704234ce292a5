"""``compact_kernel``: the exact compact CNTK in memory or in a zarr store (the entry point over
``compact`` (the computation) and ``store`` (persistence))."""
from __future__ import annotations

from typing import Any, Optional

import torch

from ...backend import resolve_device, resolve_dtype
from .compact import FORMS, CompactKernel, WindowKernel, check_compact, stream_blocks, window_arrays, window_condition
from .layers import Serial
from .store import ensure_store, open_kernel

__all__ = ["compact_kernel", "resolve_form"]


def resolve_form(arch: Serial, shape, prior: Any, form: str = "auto") -> bool:
    """True for the window form, False for the full form (``form``: "auto" | "window" | "full")."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    shape, _ = check_compact(arch, shape, prior)
    holds = window_condition(arch, shape, prior)
    if form == "window" and not holds:
        P = arch.output_period()[0]
        raise ValueError(f"the window form needs nearest upsampling and H, W >= 2P = {2 * P}; use form='full'")
    return holds if form == "auto" else form == "window"


def compact_kernel(
    arch: Serial,
    shape,
    prior: Any = "stationary",
    store: Any = None,
    *,
    form: str = "auto",
    device=None,
    dtype=None,
    block_rows: Optional[int] = None,
    workers: int = 1,
    progress: bool = False,
    overwrite: bool = False,
    method: str = "auto",
    memory_budget: int | str | None = None,
    verify: bool = False,
):
    """Exact CNTK of ``arch`` on H×W images with a stationary prior, in compact form.

    Parameters
    ----------
    arch : Serial with periodic upsampling ('nearest' / 'bilinear')
    shape : (H, W), divisible by the output period P = 2^(number of Up layers)
    prior : "stationary" | "identity" | (diag, off)
    store : None (in memory), a path ending in ``.zarr`` (that store), or a directory (the store
        ``<dir>/cntk-<key>.zarr``, content-addressed by architecture + prior + form + dtype, + shape for the
        full form). A store that already holds this kernel intact is reopened, not rebuilt; a damaged one is
        rebuilt; an interrupted build resumes (``bigntk.kernels.cntk.store``).
    form : "auto" (window form where :func:`window_condition` holds, else full), "window", "full"
    block_rows, workers : streaming over output phase rows (full form), Dask thread workers
    method : how the full form is built: "stream" (layer recursion per block), "window" (expand the
        window form, nearest upsampling only) or "auto" (window where it holds)
    memory_budget : bytes (or a size string) one streamed block may take (``bigntk.backend.memory_budget``)
    verify : with a store, also confirm the full form's checksum before reusing it

    Returns
    -------
    WindowKernel or CompactKernel with ``.rows(idx)``, ``.block(idx, jdx)``, ``.diag()``, ``.shape``,
    ``.period`` (and ``.C_window``, ``.c_far`` for the window form).
    """
    use_window = resolve_form(arch, shape, prior, form)
    shape, _ = check_compact(arch, shape, prior)
    if store is not None:
        path, _built = ensure_store(arch, shape, prior, store, window=use_window, device=device, dtype=dtype,
                                    block_rows=block_rows, workers=workers, progress=progress, overwrite=overwrite,
                                    method=method, memory_budget=memory_budget, verify=verify)
        return open_kernel(path, shape=shape, device=device, memory_budget=memory_budget)
    if use_window:
        window, c_far, _ = window_arrays(arch, prior, device=device, dtype=resolve_dtype(dtype))
        return WindowKernel(window, c_far, shape, arch, prior)
    return _full_in_memory(arch, shape, prior, device=device, dtype=dtype, block_rows=block_rows, workers=workers,
                           progress=progress, method=method, memory_budget=memory_budget)


def _full_in_memory(arch: Serial, shape, prior: Any, *, device, dtype, memory_budget, **stream) -> CompactKernel:
    """The full compact form (P, P, H, W) streamed block by block into one tensor."""
    P = arch.output_period()[0]
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    C = torch.empty((P, P) + tuple(shape), device=dev, dtype=dt)

    def sink(y0, block):
        C[y0:y0 + block.shape[0]] = block

    stream_blocks(arch, shape, prior, device=dev, dtype=dt, sink=sink, memory_budget=memory_budget, **stream)
    return CompactKernel(C, shape, arch, prior, memory_budget=memory_budget)
