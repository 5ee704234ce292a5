"""CNTK inpainting: kernel regression with the CNTK of a DIP-style encoder–decoder.

Model (Radhakrishnan, Stefanakis, Belkin, Uhler, PNAS 2022). Pixels are the points of the
regression, the kernel K (n × n, n = H·W) is the CNTK of the architecture fed the prior, and
with S = observed, U = missing pixels and Y_S the (|S| × C) observed values (RGB channels are
C right-hand sides of one solve):

    α = (K_SS + λ I)⁻¹ Y_S,        Ŷ_U = K_US α,        Ŷ_S = Y_S (observed pixels untouched).

λ = ``ridge`` × mean(diag K_SS): the CNTK is exactly singular (see ``bigntk.kernels.cntk``) and
stored in float32, so solves use a small relative ridge (default 1e-3; with 1e-6 the float32
rounding of K_SS was amplified into garbage for bilinear kernels at 128², 8k observed pixels).

Kernels depend only on (architecture, prior, padded size) — the window form not even on the size —
never on the pixels: they are built once into a zarr store in the kernel cache
(``bigntk.apps.inpaint.cache``) and reused for every later image.

Solvers (``bigntk.solvers.policy``): ``direct`` (Cholesky of K_SS; memory |S|² × 8 bytes), ``eigenpro`` /
``cg`` (the streaming solvers of ``bigntk.solvers`` over a CNTK operator of ``bigntk.operators``),
``auto`` (:func:`bigntk.solvers.policy.choose_solver` on K_SS: CNTK operators live on an image grid,
so direct up to DIRECT_MAX_FAST = 4 000 observed pixels, CG above, for the window form's fast product
and the tiled full form alike). CG on a CNTK operator uses the masked circulant
preconditioner (``bigntk.preconditioners``): at 320², 80% observed, it reaches the PSNR plateau in
about 8 iterations (3–4 s on 2 cores), so direct solves only pay off for a few thousand pixels.

Scale-out (``client=``, a ``dask.distributed.Client``): the kernel products of every solver run sharded
over its workers (:func:`cntk_operator_on`), which read the kernel store themselves — the window form's
fast product split by output rows, the full form's tiles by columns; the circulant preconditioner is
built in process from the same store. The dense kernel of ``prior="meshgrid"`` is not sharded: with a
client it is an error.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .... import persist
from ...._validation import check_nonneg
from ....backend import ACCUM_DTYPE, resolve_device, resolve_dtype, to_numpy, to_tensor
from ....kernels.cntk import dense_kernel, dip, ensure_store, open_kernel
from ....kernels.cntk.build import resolve_form
from ....operators import CNTKOperator, DenseOperator, KernelOperator, PolyphaseCNTKOperator
from ....solvers.cg import ConjugateGradient
from ....solvers.direct import NotPositiveDefiniteError, solve_direct
from ....solvers.eigenpro import EigenPro
from ....solvers.policy import check_direct_fits, choose_solver
from ..cache import enforce_cap, kernel_cache_dir, touch

__all__ = ["fill", "get_kernel", "cntk_operator_on", "PRIORS", "STORED_PRIORS", "DENSE_FORMAT"]

PRIORS = ("stationary", "meshgrid", "identity")
#: priors with the exact compact / window kernel (a kernel store that workers can read); the others are dense
STORED_PRIORS = ("stationary", "identity")
DENSE_FORMAT = "bigntk.cntk-dense"
_DENSE_MAX_PIXELS = 64 * 64 * 4


def get_kernel(arch, shape: tuple[int, int], prior: str = "stationary", cache_dir=None, progress: bool = True,
               device=None, dtype=None, memory_budget: int | str | None = None) -> tuple[Any, dict]:
    """Kernel for (arch, prior, shape) from the kernel cache, built (and stored) on first use.

    Returns ``(kernel, info)`` with ``info = {"kernel_store": path, "kernel_cached": bool (True only
    when an intact stored kernel was reused), "kernel_form": "window" | "compact" | "dense",
    "kernel_time_s": ...}``. Stationary priors give the exact compact/window kernel of
    ``bigntk.kernels.cntk``; other priors the dense kernel (small images only: n² floats).
    """
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; choose one of {PRIORS}")
    H, W = (int(s) for s in shape)
    cache = kernel_cache_dir(cache_dir)
    t0 = time.perf_counter()
    if prior in STORED_PRIORS:  # exact compact / window form
        window = resolve_form(arch, (H, W), prior)
        path, built = ensure_store(arch, (H, W), prior, cache, window=window, device=device, dtype=dtype,
                                   progress=progress, memory_budget=memory_budget)
        kernel = open_kernel(path, shape=(H, W), device=device, memory_budget=memory_budget)
        form = "window" if window else "compact"
    else:
        kernel, path, built = _dense_cached(arch, (H, W), prior, cache, device)
        form = "dense"
    touch(path)
    if built:
        enforce_cap(cache, keep=path)
    return kernel, {"kernel_store": str(path), "kernel_cached": not built, "kernel_form": form,
                    "kernel_time_s": time.perf_counter() - t0}


def _dense_path(arch, shape: tuple[int, int], prior: str, cache: Path) -> Path:
    spec = json.dumps({"format": DENSE_FORMAT, "version": 1, "arch": arch.spec(), "prior": prior,
                       "shape": list(shape)}, sort_keys=True)
    return cache / f"dense-{prior}-{shape[0]}x{shape[1]}-{hashlib.sha256(spec.encode()).hexdigest()[:16]}.zarr"


def _read_dense(path: Path) -> torch.Tensor:
    """The stored dense kernel, checked (kind, complete, every chunk, checksum)."""
    import zarr

    if persist.store_kind(path) != DENSE_FORMAT:
        raise persist.StoreError(f"{path} is not a dense kernel store")
    g = zarr.open_group(str(path), mode="r")
    if not g.attrs.get("complete"):
        raise persist.StoreError(f"{path} is incomplete")
    persist.require_chunks(g["K"], str(path))
    host = np.asarray(g["K"][...])
    if persist.checksum({"K": host}) != g.attrs.get("checksum"):
        raise persist.StoreError(f"checksum mismatch in {path}")
    return torch.from_numpy(host)


def _dense_cached(arch, shape: tuple[int, int], prior: str, cache: Path, device) -> tuple[torch.Tensor, Path, bool]:
    """(dense kernel, its store, built?) — built privately under the writer's lock, renamed into place."""
    import zarr

    H, W = shape
    if H * W > _DENSE_MAX_PIXELS:
        raise ValueError(f"prior {prior!r} needs the dense kernel ((H·W)² entries); image {H}x{W} is too "
                         "large — use prior='stationary'")
    path = _dense_path(arch, shape, prior, cache)
    with persist.exclusive(path, wait=True):
        persist.restore_interrupted_swap(path)
        if path.exists():
            try:
                return _read_dense(path), path, False
            except persist.StoreError as err:
                warnings.warn(f"kernel store {path} is damaged ({err}); rebuilding it", RuntimeWarning, stacklevel=4)
        host = to_numpy(dense_kernel(arch, shape, prior=prior, device=device)).astype(np.float32)
        tmp = persist.sidecar(path, ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        persist.create_array(g, "K", host, dims=("pixel_row", "pixel_col"), chunks=(min(1024, H * W), H * W))
        g.attrs.update({"format": DENSE_FORMAT, "format_version": 1, "arch": arch.spec(), "prior": prior,
                        "shape": [H, W], "checksum": persist.checksum({"K": host}), "complete": True})
        persist.swap_into_place(tmp, path)
    return torch.from_numpy(host), path, True


def _check_client(client: Any, prior: str) -> None:
    """A client shards kernel-store operators only (checked before the kernel is built)."""
    if client is not None and prior not in STORED_PRIORS:
        raise ValueError(f"prior {prior!r} uses the dense kernel (small images), which is not sharded over "
                         f"workers; use prior in {STORED_PRIORS} or run without a client (--workers / --scheduler)")


def cntk_operator_on(client: Any, kernel: Any, store: str | Path, *, device=None, dtype=None,
                     memory_budget: int | str | None = None) -> KernelOperator:
    """The kernel operator over ALL n = H·W pixels of ``kernel`` (fast polyphase matvec when possible).

    In process when ``client`` is None; else sharded over the workers of a ``dask.distributed.Client``
    (:func:`bigntk.distributed.distributed_operator`), each worker opening ``kernel``'s store ``store`` (a
    path the workers can read) itself. A dense kernel (a tensor) is not sharded: ValueError.
    """
    kw = {"device": device, "dtype": dtype, "memory_budget": memory_budget}
    dense = isinstance(kernel, (torch.Tensor, np.ndarray))
    window = getattr(kernel, "C_window", None) is not None  # window form: one-GEMM polyphase products
    if client is None:
        if dense:
            return DenseOperator(kernel, **kw)
        return PolyphaseCNTKOperator.from_kernel(kernel, **kw) if window else CNTKOperator(kernel, **kw)
    if dense:
        raise ValueError("a dense kernel is not sharded over workers; a client needs a compact or window-form store")
    from ....distributed import distributed_operator

    H, W = (int(s) for s in kernel.image_shape)
    factory = PolyphaseCNTKOperator.from_store if window else CNTKOperator.from_store
    return distributed_operator(client, factory, str(store), shape=(H, W), n=H * W, **kw)


def _solve_operator(kernel: Any, info: dict, S: np.ndarray, solver: str, direct_max: int | None, client: Any,
                    dev, dt, memory_budget) -> tuple[KernelOperator, str]:
    """(operator the solve and prediction run on, resolved solver); the solver is chosen on the in-process
    operator over the observed pixels S (n_obs,)."""
    store = info["kernel_store"]
    op = cntk_operator_on(None, kernel, store, device=dev, dtype=dt, memory_budget=memory_budget)
    solver = choose_solver(op.restrict(torch.as_tensor(S, device=dev)), solver, direct_max)
    if solver == "cg" or client is not None:  # CG needs a float64 matvec on these ill-conditioned kernels
        op = cntk_operator_on(client, kernel, store, device=dev,
                              dtype=ACCUM_DTYPE if solver == "cg" else dt, memory_budget=memory_budget)
    return op, solver


def _solve_direct(op, S: np.ndarray, Y: torch.Tensor, ridge: float) -> tuple[torch.Tensor, dict]:
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
    inner_res = [float(f"{r:.3g}") for r in getattr(cg.preconditioner_, "inner_residuals", [])] or None
    return res.alpha.to(ACCUM_DTYPE), {"iterations": res.iterations, "stopped": res.stopped, "ridge_abs": lam,
                                        "final": last, "preconditioner": type(cg.preconditioner_).__name__,
                                        "inner_iterations": inner, "inner_residuals": inner_res}


def _check_settings(epochs: int | None, tol: float, ridge: float | None) -> None:
    """The solver settings of :func:`fill`, checked before the kernel is built."""
    if epochs is not None and (isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1):
        raise ValueError(f"epochs must be an integer >= 1 (or None for the solver's default), got {epochs!r}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    if ridge is not None:
        check_nonneg("ridge", ridge)


def fill(image: np.ndarray, observed: np.ndarray, *, levels: int = 6, arch=None, solver: str = "auto",
         prior: str = "stationary", filter: int = 3, upsample: str = "nearest", ridge: float | None = None,
         epochs: int | None = None, device=None, dtype=None, memory_budget: int | str | None = None,
         cache_dir=None, seed: int = 0, progress: bool = True, direct_max: int | None = None, tol: float = 1e-3,
         rank: int | str = "auto", client: Any = None) -> tuple[np.ndarray, dict]:
    """CNTK regression fill of ``image`` (H, W, C) from ``observed`` (H, W) bool pixels.

    H and W must be multiples of 2**levels (``bigntk.apps.inpaint.pipeline`` pads). ``tol``: CG stops at
    this relative residual (at 10⁻³ the PSNR was within 0.01 dB of its plateau at 320², random 20%
    missing, and at 448 × 704 with holes and scratches);
    ``epochs``: EigenPro epochs or the CG iteration cap (default EigenPro 200 full-batch epochs on the
    window form's fast product, else 10; CG 100). ``direct_max``: the ``auto`` direct/iterative threshold
    (default: the policy's). ``client``: a ``dask.distributed.Client`` whose workers run the kernel products
    (module docstring). Returns ``(completed, info)``; info: kernel store/form/cache hit, solver, operator,
    workers (None in process), iterations, timings.
    """
    H, W, C = image.shape
    _check_settings(epochs, tol, ridge)
    _check_client(client, prior)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    S = np.flatnonzero(observed.reshape(-1))
    U = np.flatnonzero(~observed.reshape(-1))
    if solver == "direct":  # refused before the kernel is built, not when K_SS is allocated
        check_direct_fits(len(S), dev, ACCUM_DTYPE)
    arch = arch if arch is not None else dip(levels, filter=filter, upsample=upsample)
    kernel, info = get_kernel(arch, (H, W), prior, cache_dir, progress, device=dev, dtype=dt,
                              memory_budget=memory_budget)
    op, solver = _solve_operator(kernel, info, S, solver, direct_max, client, dev, dt, memory_budget)
    ridge = 1e-3 if ridge is None else ridge  # relative; smaller ridges amplify the float32 rounding
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
                workers=None if client is None else len(set(op.workers)),
                solve_time_s=t1 - t0, predict_time_s=time.perf_counter() - t1)
    if client is not None:
        op.close()  # release the shards on the workers
    return out.reshape(H, W, C), info
