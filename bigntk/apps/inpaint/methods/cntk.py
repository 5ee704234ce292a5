"""CNTK inpainting: kernel regression with the CNTK of a DIP-style encoder–decoder.

Model (Radhakrishnan, Stefanakis, Belkin, Uhler, PNAS 2022). Pixels are the points of the
regression, the kernel K (n × n, n = H·W) is the CNTK of the architecture fed the prior, and
with S = observed, U = missing pixels and Y_S the (|S| × C) observed values (RGB channels are
C right-hand sides of one solve):

    α = (K_SS + λ I)⁻¹ Y_S,        Ŷ_U = K_US α,        Ŷ_S = Y_S (observed pixels untouched).

λ = ``ridge`` × mean(diag K_SS): the CNTK is exactly singular (see ``bigntk.kernels.cntk``) and
stored in float32, so solves use a small relative ridge (default 1e-3; with 1e-6 the float32
rounding of K_SS was amplified into garbage for bilinear kernels at 128², 8k observed pixels).

Kernels depend only on (architecture, prior, padded size), not on the pixels: they are built
once into a zarr store in a cache directory (default ``platformdirs.user_cache_dir("bigntk") /
"kernels"``, or ``$BIGNTK_KERNEL_CACHE``) and reused for every later image of that size.

Solvers: ``direct`` (Cholesky of K_SS; memory |S|² × 8 bytes), ``eigenpro`` / ``cg`` (the
streaming solvers of ``bigntk.solvers`` over a CNTK operator of ``bigntk.operators``), ``auto``
(direct when |S| ≤ ``direct_max``, else cg). CG on a CNTK operator uses the masked circulant
preconditioner (``bigntk.preconditioners``): at 320², 80% observed, it reaches the PSNR plateau in
about 8 iterations (3–4 s on 2 cores), so direct solves only pay off for a few thousand pixels.
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
#: ``solver="auto"`` solves directly up to this many observed pixels; above, preconditioned CG is faster.
DIRECT_MAX = 4_000


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
               progress: bool = True, device=None, dtype=None) -> tuple[Any, dict]:
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
    if prior in ("stationary", "identity"):  # exact compact / window form, zarr store
        dt = resolve_dtype(dtype)
        form = "window" if _cntk.window_condition(arch, (H, W), prior) else "full"
        key = _cntk.kernel_key(arch, (H, W), prior, form=form, dtype=dt)
        path = cache / f"cntk-{key[:16]}.zarr"
        cached = path.exists()
        kernel = _cntk.compact_kernel(arch, (H, W), prior=prior, store=path, form=form, device=device,
                                      dtype=dt, progress=progress)
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


def _operator(kernel: Any, shape: tuple[int, int], device, dtype):
    """A ``bigntk.operators`` kernel operator over ALL pixels (fast polyphase matvec when possible)."""
    from ....operators import CNTKOperator, DenseOperator, PolyphaseCNTKOperator

    if isinstance(kernel, torch.Tensor) or isinstance(kernel, np.ndarray):
        return DenseOperator(kernel, device=device, dtype=dtype)
    if getattr(kernel, "C_window", None) is not None:  # window form: one-GEMM polyphase products
        return PolyphaseCNTKOperator.from_kernel(kernel, device=device, dtype=dtype)
    return CNTKOperator(kernel, device=device, dtype=dtype)


def _solve_direct(op, S: np.ndarray, Y: torch.Tensor, ridge: float) -> tuple[torch.Tensor, dict]:
    from ....solvers.direct import NotPositiveDefiniteError, solve_direct

    K = op.block(S, S).to(ACCUM_DTYPE)
    scale = float(K.diagonal().mean())
    lam = ridge * scale
    for _ in range(4):
        try:
            alpha = solve_direct(K.clone(), Y, ridge=lam)
            return alpha, {"ridge_abs": lam}
        except NotPositiveDefiniteError:
            lam = max(lam * 100.0, 1e-10 * scale)
    raise NotPositiveDefiniteError(f"K_SS is not positive definite even with ridge {lam:.3g}; raise ridge")


def _solve_iterative(op, S: np.ndarray, Y: torch.Tensor, solver: str, ridge: float, epochs: int | None,
                     seed: int, progress: bool, tol: float, rank: int | str = "auto") -> tuple[torch.Tensor, dict]:
    """EigenPro or deflated, preconditioned CG (``bigntk.solvers``) on K_SS."""
    from ....solvers.cg import ConjugateGradient
    from ....solvers.eigenpro import EigenPro

    sub = op.restrict(torch.as_tensor(S, device=op.device))
    lam = ridge * float(sub.diag().double().mean())
    if solver == "eigenpro":
        # a full-batch epoch (fast-product operators) is one step: about the cost of 1/20 mini-batch epoch
        default_epochs = 200 if sub.fast_matmul else 10
        res = EigenPro(epochs=epochs or default_epochs, ridge=lam, seed=seed, progress=progress).fit(sub, Y)
        return res.alpha.to(ACCUM_DTYPE), {"iterations": len(res.history), "stopped": res.stopped,
                                            "ridge_abs": lam}
    cg = ConjugateGradient(max_iter=epochs or 100, tol=tol, ridge=lam, rank=rank, seed=seed, progress=progress)
    res = cg.fit(sub, Y)  # CNTK operators: masked circulant preconditioner (auto)
    last = res.history[-1] if res.history else {}
    inner = getattr(cg.preconditioner_, "inner_iterations", None)
    return res.alpha.to(ACCUM_DTYPE), {"iterations": res.iterations, "stopped": res.stopped, "ridge_abs": lam,
                                        "final": last, "preconditioner": type(cg.preconditioner_).__name__,
                                        "inner_iterations": inner}


def fill(image: np.ndarray, observed: np.ndarray, *, levels: int = 6, arch=None, solver: str = "auto",
         prior: str = "stationary", filter: int = 3, upsample: str = "nearest", ridge: float | None = None,
         epochs: int | None = None, device=None, dtype=None, cache_dir=None, seed: int = 0,
         progress: bool = True, direct_max: int = DIRECT_MAX, tol: float = 1e-3, rank: int | str = "auto",
         **_ignored) -> tuple[np.ndarray, dict]:
    """CNTK regression fill of ``image`` (H, W, C) from ``observed`` (H, W) bool pixels.

    H and W must be multiples of 2**levels (``bigntk.apps.inpaint.pipeline`` pads). ``tol``: CG stops at this
    relative residual (at 10⁻³ the PSNR was within 0.01 dB of its plateau at 320², random 20%
    missing, and at 448 × 704 with holes and scratches);
    ``epochs``: EigenPro epochs or the CG iteration cap (default EigenPro 200 full-batch epochs on the
    window form's fast product, else 10; CG 100). Returns ``(completed, info)``;
    info: kernel store/form/cache hit, solver, iterations, timings.
    """
    import time

    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
    H, W, C = image.shape
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    arch = arch if arch is not None else build_arch(levels, filter=filter, upsample=upsample)
    kernel, info = get_kernel(arch, (H, W), prior, cache_dir, progress, device=dev, dtype=dt)
    S = np.flatnonzero(observed.reshape(-1))
    U = np.flatnonzero(~observed.reshape(-1))
    if solver == "auto":
        solver = "direct" if len(S) <= direct_max else "cg"
    if ridge is None:
        ridge = 1e-3  # relative; smaller ridges amplify the float32 rounding of stored kernels
    # CG needs a float64 matvec on these ill-conditioned kernels (bigntk.solvers.cg)
    op = _operator(kernel, (H, W), dev, ACCUM_DTYPE if solver == "cg" else dt)
    Y = to_tensor(image.reshape(H * W, C)[S], device=dev, dtype=ACCUM_DTYPE)
    t0 = time.perf_counter()
    if solver == "direct":
        alpha, sinfo = _solve_direct(op, S, Y, ridge)
    else:
        alpha, sinfo = _solve_iterative(op, S, Y, solver, ridge, epochs, seed, progress, tol, rank)
    t1 = time.perf_counter()
    out = image.reshape(H * W, C).astype(np.float32, copy=True)
    if len(U):
        pred = op.matmul(alpha, rows=torch.as_tensor(U, device=dev), cols=torch.as_tensor(S, device=dev))
        out[U] = to_numpy(pred).astype(np.float32)
    info.update(sinfo, solver=solver, ridge=ridge, operator=type(op).__name__, n_observed=int(len(S)),
                solve_time_s=t1 - t0, predict_time_s=time.perf_counter() - t1)
    return out.reshape(H, W, C), info
