"""CNTK inpainting: kernel regression with the CNTK of a DIP-style encoder–decoder.

Model (Radhakrishnan, Stefanakis, Belkin, Uhler, PNAS 2022). Pixels are the points of the
regression, the kernel K (n × n, n = H·W) is the CNTK of the architecture fed the prior, and
with S = observed, U = missing pixels and Y_S the (|S| × C) observed values (RGB channels are
C right-hand sides of one solve):

    α = (K_SS + λ I)⁻¹ Y_S,        Ŷ_U = K_US α,        Ŷ_S = Y_S (observed pixels untouched).

λ = ``ridge`` × mean(diag K_SS): the CNTK is exactly singular (see ``bigntk.kernels.cntk``), so
the direct solve uses a tiny relative ridge (default 1e-6) in float64.

Kernels depend only on (architecture, prior, padded size), not on the pixels: they are built
once into a zarr store in a cache directory (default ``platformdirs.user_cache_dir("bigntk") /
"kernels"``, or ``$BIGNTK_KERNEL_CACHE``) and reused for every later image of that size.

Solvers: ``direct`` (Cholesky of K_SS; memory |S|² × 8 bytes), ``eigenpro`` / ``cg`` (the
streaming solvers of ``bigntk.solvers`` over a CNTK operator of ``bigntk.operators``), ``auto``
(direct when |S| ≤ ``direct_max``, else cg/eigenpro).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ....backend import ACCUM_DTYPE, resolve_device, resolve_dtype, to_numpy, to_tensor

__all__ = ["fill", "kernel_cache_dir", "build_arch", "get_kernel", "DIRECT_MAX", "SOLVERS", "PRIORS"]

SOLVERS = ("auto", "direct", "eigenpro", "cg")
PRIORS = ("stationary", "meshgrid", "identity")
#: ``solver="auto"`` solves directly up to this many observed pixels (K_SS of 12k² float64 ≈ 1.2 GB).
DIRECT_MAX = 12_000


def kernel_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Directory of cached kernel stores: argument > ``$BIGNTK_KERNEL_CACHE`` > user cache dir."""
    if cache_dir is None:
        cache_dir = os.environ.get("BIGNTK_KERNEL_CACHE")
    if cache_dir is None:
        import platformdirs

        cache_dir = Path(platformdirs.user_cache_dir("bigntk")) / "kernels"
    path = Path(cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_arch(levels: int, filter: int = 3, upsample: str = "nearest", convs_per_level: int = 1,
               activation: str = "relu"):
    """The paper's encoder–decoder architecture (``bigntk.kernels.cntk.dip``)."""
    from ....kernels import cntk as _cntk

    return _cntk.dip(levels, filter=filter, convs_per_level=convs_per_level, upsample=upsample,
                     activation=activation)


def _arch_key(arch) -> str:
    return hashlib.sha256(repr(arch).encode()).hexdigest()[:16]


def get_kernel(arch, shape: tuple[int, int], prior: str = "stationary", cache_dir=None,
               progress: bool = True) -> tuple[Any, dict]:
    """Kernel for (arch, prior, shape) from the cache directory, built (and stored) on first use.

    Returns ``(kernel, info)`` with ``info = {"kernel_store": path, "kernel_cached": bool,
    "kernel_form": "window" | "compact" | "dense", "kernel_time_s": ...}``. Stationary priors give
    the exact compact/window kernel of ``bigntk.kernels.cntk``; other priors the dense kernel
    (small images only: n² floats).
    """
    import time

    from ....kernels import cntk as _cntk

    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; choose one of {PRIORS}")
    H, W = (int(s) for s in shape)
    cache = kernel_cache_dir(cache_dir)
    t0 = time.perf_counter()
    if prior == "stationary":
        key = _cntk.kernel_key(arch, prior, (H, W))
        path = cache / f"{key}.zarr"
        cached = path.exists()
        kernel = _cntk.open_kernel(path) if cached else _cntk.compact_kernel(arch, (H, W), prior=prior, store=path)
        form = "window" if isinstance(kernel, _cntk.WindowKernel) else "compact"
    else:
        import zarr

        if H * W > 64 * 64 * 4:
            raise ValueError(f"prior {prior!r} needs the dense kernel ((H·W)² entries); image {H}x{W} is too "
                             "large — use prior='stationary'")
        path = cache / f"dense-{prior}-{H}x{W}-{_arch_key(arch)}.zarr"
        cached = path.exists()
        if cached:
            kernel = torch.from_numpy(np.asarray(zarr.open_array(str(path), mode="r")[...]))
        else:
            kernel = _cntk.dense_kernel(arch, (H, W), prior=prior)
            arr = zarr.create_array(str(path) + ".tmp", shape=tuple(kernel.shape), dtype="float32",
                                    chunks=(min(1024, H * W), H * W), overwrite=True)
            arr[...] = to_numpy(kernel).astype(np.float32)
            os.replace(str(path) + ".tmp", path)
        form = "dense"
    return kernel, {"kernel_store": str(path), "kernel_cached": bool(cached), "kernel_form": form,
                    "kernel_time_s": time.perf_counter() - t0}
