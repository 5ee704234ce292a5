"""Image inpainting and reconstruction: ``inpaint(image, mask, method="cntk", ...)``.

Fills the missing pixels of an image — large holes (inpainting) or scattered pixels
(reconstruction) — with the CNTK of a Deep-Image-Prior encoder–decoder (kernel regression,
Radhakrishnan et al., PNAS 2022), or with the baselines ``biharmonic`` (scikit-image) and
``dip`` (a finite-width network trained with Adam).

Conventions: images (H, W) or (H, W, 3), uint8 / uint16 / float in [0, 1]; the result is float32
in [0, 1] of the same shape, with observed pixels exactly equal to the input's (converted to
[0, 1]). ``mask`` is (H, W), True/nonzero = observed. Sizes that are not multiples of
2**levels are reflect-padded and cropped back (``bigntk.apps.inpaint.geometry``).
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .apps.inpaint import geometry, io, metrics
from .apps.inpaint.methods import METHODS
from .apps.inpaint.report import REPORT_KEYS

__all__ = ["inpaint", "run_inpainting", "METHODS"]


def _method_fn(method: str):
    if method == "cntk":
        from .apps.inpaint.methods.cntk import fill
    elif method == "biharmonic":
        from .apps.inpaint.methods.biharmonic import fill
    elif method == "dip":
        from .apps.inpaint.methods.dip import fill
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    return fill


def _prepare(image: Any, mask: Any, marker: float | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(image, (str, Path)):
        raw = io._read_raw(image)
    else:
        raw = np.asarray(image)
    if mask is None:
        if marker is None:
            raise ValueError("give a mask (True = observed) or a marker value for missing pixels")
        return io.mask_from_marker(raw, marker)
    img = io.to_float01(raw)
    if isinstance(mask, (str, Path)):
        observed = io.load_mask(mask)
    else:
        observed = io.as_mask(mask)
    if observed.shape != img.shape[:2]:
        raise ValueError(f"mask shape {observed.shape} does not match image shape {img.shape[:2]}")
    return img, observed


def run_inpainting(image: np.ndarray, observed: np.ndarray, *, method: str = "cntk", levels: int = 6,
                   truth: np.ndarray | None = None, check_depth: bool = True,
                   **options) -> tuple[np.ndarray, dict]:
    """Core pipeline on a [0, 1] image (H, W[, 3]) and bool mask (H, W); returns (completed, report).

    The report has the top-level keys :data:`REPORT_KEYS` (see ``bigntk.apps.inpaint.report``).
    """
    fill = _method_fn(method)
    H, W = observed.shape
    if not observed.any():
        raise ValueError("the mask observes no pixel")
    grey = image.ndim == 2
    img3 = image[..., None] if grey else image
    depth = geometry.check_depth(observed, levels, warn=check_depth and method in ("cntk", "dip"))
    t0 = time.perf_counter()
    if method in ("cntk", "dip"):
        img_p, obs_p = geometry.pad_reflect(img3, observed, levels)
        img_p = np.where(obs_p[..., None], img_p, 0.0).astype(np.float32)  # the method never sees U
        out_p, info = fill(img_p, obs_p, levels=levels, **options)
        out = geometry.crop(out_p, (H, W))
    else:
        out, info = fill(np.where(observed[..., None], img3, 0.0).astype(np.float32), observed, **options)
    time_s = time.perf_counter() - t0
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    out[observed] = img3[observed]  # observed pixels untouched
    if grey:
        out = out[..., 0]
    scores = {"psnr": None, "ssim": None, "psnr_missing": None}
    if truth is not None:
        truth = io.to_float01(truth)
        if truth.shape != out.shape:
            raise ValueError(f"truth shape {truth.shape} != image shape {out.shape}")
        scores = metrics.evaluate(truth, out, observed)
    settings = {"levels": levels, **{k: v for k, v in options.items() if k not in ("progress",)}}
    report = {"method": method, **scores, "time_s": time_s, "peak_rss_gb": metrics.peak_rss_gb(),
              "settings": settings, "shape": list(image.shape), "observed_fraction": float(observed.mean()),
              "depth": depth, "info": info}
    assert all(k in report for k in REPORT_KEYS)
    return out, report


def inpaint(image: Any, mask: Any = None, *, method: str = "cntk", levels: int = 6, arch: Any = None,
            solver: str = "auto", prior: str = "stationary", filter: int = 3, upsample: str = "nearest",
            ridge: float | None = None, epochs: int | None = None, device=None, dtype=None,
            cache_dir: str | Path | None = None, marker: float | None = None, truth: Any = None,
            seed: int = 0, progress: bool = True, return_report: bool = False,
            **method_options) -> np.ndarray | tuple[np.ndarray, dict]:
    """Fill the missing pixels of ``image``.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array (uint8, uint16 or float in [0, 1]) or an image path.
    mask : (H, W) array or mask path, nonzero/True = observed. Omit it and pass ``marker`` for a
        corrupted image whose missing pixels hold that value (e.g. 0 or NaN) in every channel.
    method : "cntk" (default), "biharmonic" or "dip".
    levels : down/up-sampling stages s of the encoder–decoder (cntk, dip). A hole of side m needs
        s ≥ ⌊log2(m+1)⌋ (warned about otherwise).
    arch : a ``bigntk.kernels.cntk`` architecture (overrides levels/filter/upsample for cntk).
    solver : "auto" | "direct" | "eigenpro" | "cg" (cntk).
    prior : "stationary" (default; exact compact kernel) | "meshgrid" | "identity" (dense, small images).
    ridge : relative ridge λ / mean(diag K_SS) (cntk; default 1e-3).
    epochs : iterations/epochs of the iterative solvers (cntk) or of Adam (dip: ``iterations``).
    device, dtype : see ``bigntk.backend``.
    cache_dir : kernel cache directory (default: user cache dir, or ``$BIGNTK_KERNEL_CACHE``).
    truth : ground truth (same shape as image) for PSNR/SSIM in the report.
    return_report : also return the JSON-ready report dict.
    **method_options : passed to the method (e.g. ``width``, ``iterations``, ``lr`` for dip).

    Returns
    -------
    completed : float32 array of the image's shape in [0, 1]; observed pixels equal the input.
    report : dict (only with ``return_report=True``).
    """
    img, observed = _prepare(image, mask, marker)
    if arch is not None:
        levels = int(getattr(arch, "n_down", levels))
    opts: dict[str, Any] = dict(method_options)
    if method == "cntk":
        opts.update(arch=arch, solver=solver, prior=prior, filter=filter, upsample=upsample, ridge=ridge,
                    epochs=epochs, device=device, dtype=dtype, cache_dir=cache_dir, seed=seed,
                    progress=progress)
    elif method == "dip":
        if epochs is not None:
            opts.setdefault("iterations", epochs)
        opts.update(filter=filter, upsample=upsample, device=device, seed=seed, progress=progress)
    truth_arr = None
    if truth is not None:
        truth_arr = io._read_raw(truth) if isinstance(truth, (str, Path)) else np.asarray(truth)
    out, report = run_inpainting(img, observed, method=method, levels=levels, truth=truth_arr, **opts)
    return (out, report) if return_report else out
