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

from .geometry import check_depth as depth_report, crop, pad_reflect
from .io import as_mask, load_mask, mask_from_marker, read_raw, to_float01
from .methods import METHODS
from .metrics import evaluate, peak_rss_gb
from .report import require_keys

__all__ = ["inpaint", "inpaint_with_report", "run_inpainting", "METHODS"]


def _method_fn(method: str):
    if method == "cntk":
        from .methods.cntk import fill
    elif method == "biharmonic":
        from .methods.biharmonic import fill
    elif method == "dip":
        from .methods.dip import fill
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    return fill


def _prepare(image: Any, mask: Any, marker: float | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(image, (str, Path)):
        raw = read_raw(image)
    else:
        raw = np.asarray(image)
    if mask is None:
        if marker is None:
            raise ValueError("give a mask (True = observed) or a marker value for missing pixels")
        return mask_from_marker(raw, marker)
    img = to_float01(raw)
    if isinstance(mask, (str, Path)):
        observed = load_mask(mask)
    else:
        observed = as_mask(mask)
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
    depth = depth_report(observed, levels, warn=check_depth and method in ("cntk", "dip"))
    t0 = time.perf_counter()
    if method in ("cntk", "dip"):
        img_p, obs_p = pad_reflect(img3, observed, levels)
        img_p = np.where(obs_p[..., None], img_p, 0.0).astype(np.float32)  # the method never sees U
        out_p, info = fill(img_p, obs_p, levels=levels, **options)
        out = crop(out_p, (H, W))
    else:
        out, info = fill(np.where(observed[..., None], img3, 0.0).astype(np.float32), observed, **options)
    time_s = time.perf_counter() - t0
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    out[observed] = img3[observed]  # observed pixels untouched
    if grey:
        out = out[..., 0]
    scores = {"psnr": None, "ssim": None, "psnr_missing": None}
    if truth is not None:
        truth = to_float01(truth)
        if truth.shape != out.shape:
            raise ValueError(f"truth shape {truth.shape} != image shape {out.shape}")
        scores = evaluate(truth, out, observed)
    settings = {"levels": levels, **{k: v for k, v in options.items() if k not in ("progress",)}}
    report = {"method": method, **scores, "time_s": time_s, "peak_rss_gb": peak_rss_gb(),
              "settings": settings, "shape": list(image.shape), "observed_fraction": float(observed.mean()),
              "depth": depth, "info": info}
    return out, require_keys(report)


def inpaint_with_report(image: Any, mask: Any = None, *, method: str = "cntk", levels: int = 6,
                        arch: Any = None, solver: str = "auto", prior: str = "stationary", filter: int = 3,
                        upsample: str = "nearest", ridge: float | None = None, epochs: int | None = None,
                        device=None, dtype=None, memory_budget: int | str | None = None,
                        cache_dir: str | Path | None = None, marker: float | None = None,
                        truth: Any = None, seed: int = 0, progress: bool = True,
                        **method_options) -> tuple[np.ndarray, dict]:
    """Fill the missing pixels of ``image``; returns ``(completed, report)``.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array (uint8, uint16 or float in [0, 1]) or an image path.
    mask : (H, W) array or mask path, nonzero/True = observed. Omit it and pass ``marker`` for a
        corrupted image whose missing pixels hold that value (e.g. 0 or NaN) in every channel.
    method : "cntk" (default), "biharmonic" or "dip".
    levels : down/up-sampling stages s of the encoder–decoder (cntk, dip). A hole of side m needs
        s ≥ ⌊log2(m+1)⌋ (warned about otherwise).
    arch : a ``bigntk.kernels.cntk`` architecture (overrides levels/filter/upsample): the kernel's for cntk,
        the trained network's for dip (``Serial.network``).
    solver : "auto" | "direct" | "eigenpro" | "cg" (cntk).
    prior : "stationary" (default; exact compact kernel) | "meshgrid" | "identity" (dense, small images).
    ridge : relative ridge λ / mean(diag K_SS) (cntk; default 1e-3).
    epochs : iterations/epochs of the iterative solvers (cntk) or of Adam (dip: ``iterations``).
    device, dtype, memory_budget : see ``bigntk.backend`` (cntk; dip takes the device).
    cache_dir : kernel cache directory (default: user cache dir, or ``$BIGNTK_KERNEL_CACHE``).
    truth : ground truth (same shape as image) for PSNR/SSIM in the report.
    **method_options : passed to the method (e.g. ``width``, ``iterations``, ``lr`` for dip); a name
        the method does not take is an error.

    Returns
    -------
    completed : float32 array of the image's shape in [0, 1]; observed pixels equal the input.
    report : JSON-ready dict with the keys of ``bigntk.apps.inpaint.report.REPORT_KEYS`` and more.
    """
    img, observed = _prepare(image, mask, marker)
    if arch is not None:
        levels = int(getattr(arch, "n_down", levels))
    opts: dict[str, Any] = dict(method_options)
    if method == "cntk":
        opts.update(arch=arch, solver=solver, prior=prior, filter=filter, upsample=upsample, ridge=ridge,
                    epochs=epochs, device=device, dtype=dtype, memory_budget=memory_budget, cache_dir=cache_dir,
                    seed=seed, progress=progress)
    elif method == "dip":
        if epochs is not None:
            opts.setdefault("iterations", epochs)
        opts.update(arch=arch, filter=filter, upsample=upsample, device=device, seed=seed, progress=progress)
    truth_arr = None
    if truth is not None:
        truth_arr = read_raw(truth) if isinstance(truth, (str, Path)) else np.asarray(truth)
    return run_inpainting(img, observed, method=method, levels=levels, truth=truth_arr, **opts)


def inpaint(image: Any, mask: Any = None, **options) -> np.ndarray:
    """Fill the missing pixels of ``image``: the completed image of :func:`inpaint_with_report`.

    Takes the same arguments; returns a float32 array of the image's shape in [0, 1] whose observed
    pixels equal the input's.
    """
    return inpaint_with_report(image, mask, **options)[0]
