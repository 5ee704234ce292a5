"""Image inpainting and reconstruction: ``inpaint(image, mask, method="cntk", ...)``.

Fills the missing pixels of an image — large holes (inpainting) or scattered pixels
(reconstruction) — with the CNTK of a Deep-Image-Prior encoder–decoder (kernel regression,
Radhakrishnan et al., PNAS 2022), or with the baselines ``biharmonic`` (scikit-image) and
``dip`` (a finite-width network trained with Adam).

Conventions: images (H, W) or (H, W, 3), uint8 / uint16 / float in [0, 1]; the result is float32
in [0, 1] of the same shape, with observed pixels exactly equal to the input's (converted to
[0, 1]). ``mask`` is (H, W), True/nonzero = **observed**; ``missing`` is the opposite convention
(scikit-image's ``inpaint_biharmonic``: True = missing). The image is padded to a multiple of
2**levels and, with ``boundary="open"`` (default), by 2**levels − 1 more unobserved pixels so that
opposite borders do not wrap onto each other (``bigntk.apps.inpaint.geometry``); the result is
cropped back.

Checks: a non-finite value (NaN, inf) at an observed pixel is an error (mark it missing instead),
and a non-finite result is an error, never returned.

Scale-out: ``client=`` (a ``dask.distributed.Client``) runs the CNTK's kernel products sharded over its
workers (``bigntk.apps.inpaint.methods.cntk``), which open the kernel store themselves (its path must be
readable where they run); the fill equals the in-process one up to float64 rounding. The other methods
have no kernel products, and a client given to them is an error (:func:`check_client`).
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ... import backend
from .geometry import boundary_margin, check_depth as depth_report, check_levels, check_padded_size, crop, pad_reflect
from .io import as_mask, load_mask, mask_from_marker, read_raw, to_float01
from .methods import METHODS, method_fill
from .metrics import evaluate, peak_rss_gb
from .report import require_keys

__all__ = ["inpaint", "inpaint_with_report", "run_inpainting", "check_client", "METHODS", "MaskWarning",
           "FEW_OBSERVED"]

#: observed fractions below this are warned about (an inverted mask is the likely cause)
FEW_OBSERVED = 0.1
#: options that are not settings (left out of the report's ``settings``)
_RUNTIME_OPTIONS = ("progress", "client")


class MaskWarning(UserWarning):
    """The mask observes so few pixels that it may follow the opposite convention (True = missing)."""


def check_client(method: str, sharded: bool) -> None:
    """Refuse a client (``sharded``: one is given) for a method without kernel products to shard."""
    if sharded and method != "cntk":
        raise ValueError(f"a dask client (client=, --workers, --scheduler) shards the CNTK's kernel products; "
                         f"method {method!r} has none: run it without one")


def _read_mask(mask: Any, means: str) -> np.ndarray:
    return load_mask(mask, means) if isinstance(mask, (str, Path)) else as_mask(mask, means)


def _prepare(image: Any, mask: Any, missing: Any, marker: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(image in [0, 1], observed mask) from the caller's image and one of mask / missing / marker."""
    raw = read_raw(image) if isinstance(image, (str, Path)) else np.asarray(image)
    given = [name for name, v in (("mask", mask), ("missing", missing), ("marker", marker)) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of mask (True = observed), missing (True = missing) or a marker "
                         f"value for missing pixels; got {given or 'none'}")
    if marker is not None:
        img, observed = mask_from_marker(raw, marker)
    else:
        img = to_float01(raw)
        observed = _read_mask(mask, "observed") if mask is not None else _read_mask(missing, "missing")
    if observed.shape != img.shape[:2]:
        raise ValueError(f"mask shape {observed.shape} does not match image shape {img.shape[:2]}")
    if mask is not None and 0 < observed.mean() < FEW_OBSERVED:
        warnings.warn(f"the mask observes only {observed.mean():.1%} of the pixels (mask True/nonzero = "
                      "observed); if it marks the missing pixels (scikit-image's inpaint_biharmonic "
                      "convention), pass it as missing= instead (CLI: --mask-missing-value nonzero)",
                      MaskWarning, stacklevel=3)
    return img, observed


def _check_finite(img: np.ndarray, observed: np.ndarray, what: str = "image") -> None:
    """Refuse NaN / inf at observed pixels: the working dtype cannot represent them as data."""
    bad = ~np.isfinite(img.reshape(*observed.shape, -1)).all(axis=-1) & observed
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"the {what} holds NaN or inf at {int(bad.sum())} observed pixel(s) (first at row {i}, "
                         f"column {j}); mark them missing (mask False, or marker=float('nan'))")


def _run_method(fill, img3: np.ndarray, observed: np.ndarray, method: str, levels: int, boundary: str,
                options: dict) -> tuple[np.ndarray, dict]:
    """The method on the (padded) image; missing pixels are zeroed first (the method never sees them)."""
    if method not in ("cntk", "dip"):
        return fill(np.where(observed[..., None], img3, 0.0).astype(np.float32), observed, **options)
    img_p, obs_p = pad_reflect(img3, observed, levels, boundary_margin(levels, boundary))
    img_p = np.where(obs_p[..., None], img_p, 0.0).astype(np.float32)
    out_p, info = fill(img_p, obs_p, levels=levels, **options)
    return crop(out_p, observed.shape), {**info, "padded_shape": list(obs_p.shape)}


def _finish(out: np.ndarray, img3: np.ndarray, observed: np.ndarray, method: str) -> np.ndarray:
    """Clip to [0, 1] and restore the observed pixels; a non-finite fill is an error."""
    bad = ~np.isfinite(out)
    if bad.any():
        raise RuntimeError(f"method {method!r} produced {int(bad.sum())} non-finite values; nothing is returned "
                           "(try dtype='float64', a larger ridge or another solver)")
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    out[observed] = img3[observed]  # observed pixels untouched
    return out


def run_inpainting(image: np.ndarray, observed: np.ndarray, *, method: str = "cntk", levels: int = 6,
                   boundary: str = "open", truth: np.ndarray | None = None, check_depth: bool = True,
                   **options) -> tuple[np.ndarray, dict]:
    """Core pipeline on a [0, 1] image (H, W[, 3]) and bool mask (H, W); returns (completed, report).

    The report has the top-level keys :data:`REPORT_KEYS` (see ``bigntk.apps.inpaint.report``).
    """
    fill = method_fill(method, {**options, "levels": levels} if method in ("cntk", "dip") else options)
    boundary_margin(levels, boundary)  # validates the name
    if not observed.any():
        raise ValueError("the mask observes no pixel")
    _check_finite(image, observed)
    grey = image.ndim == 2
    img3 = image[..., None] if grey else image
    if method in ("cntk", "dip"):
        check_padded_size(observed.shape, img3.shape[2], check_levels(levels), boundary,
                          backend.free_memory_bytes("cpu"))
    depth = depth_report(observed, levels, warn=check_depth and method in ("cntk", "dip"))
    t0 = time.perf_counter()
    out, info = _run_method(fill, img3, observed, method, levels, boundary, options)
    time_s = time.perf_counter() - t0
    out = _finish(out, img3, observed, method)
    if grey:
        out = out[..., 0]
    scores = {"psnr": None, "ssim": None, "psnr_missing": None}
    if truth is not None:
        truth = to_float01(truth)
        if truth.shape != out.shape:
            raise ValueError(f"truth shape {truth.shape} != image shape {out.shape}")
        _check_finite(truth, np.ones(observed.shape, bool), "truth")
        scores = evaluate(truth, out, observed)
    settings = {"levels": levels, "boundary": boundary,
                **{k: v for k, v in options.items() if k not in _RUNTIME_OPTIONS}}
    report = {"method": method, **scores, "time_s": time_s, "peak_rss_gb": peak_rss_gb(),
              "settings": settings, "shape": list(image.shape), "observed_fraction": float(observed.mean()),
              "depth": depth, "info": info}
    return out, require_keys(report)


def inpaint_with_report(image: Any, mask: Any = None, *, missing: Any = None, method: str = "cntk", levels: int = 6,
                        boundary: str = "open",
                        arch: Any = None, solver: str = "auto", prior: str = "stationary", filter: int = 3,
                        upsample: str = "nearest", ridge: float | None = None, epochs: int | None = None,
                        device=None, dtype=None, memory_budget: int | str | None = None,
                        cache_dir: str | Path | None = None, marker: float | None = None,
                        truth: Any = None, seed: int = 0, progress: bool = True, client: Any = None,
                        **method_options) -> tuple[np.ndarray, dict]:
    """Fill the missing pixels of ``image``; returns ``(completed, report)``.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array (uint8, uint16 or float in [0, 1]) or an image path.
    mask : (H, W) array or mask path, nonzero/True = observed (warned about when it observes under 10 %:
        an inverted mask is the likely cause).
    missing : instead of ``mask``: (H, W) array or path, nonzero/True = missing (scikit-image's convention).
        Or give neither and pass ``marker`` for a corrupted image whose missing pixels hold that value
        (e.g. 0 or NaN) in every channel.
    method : "cntk" (default), "biharmonic" or "dip".
    levels : down/up-sampling stages s of the encoder–decoder (cntk, dip). A hole of side m needs
        s ≥ ⌊log2(m+1)⌋ (warned about otherwise).
    boundary : "open" (default: no wrap-around between opposite borders) or "periodic" (cntk, dip;
        ``bigntk.apps.inpaint.geometry``).
    arch : a ``bigntk.kernels.cntk`` architecture (overrides levels/filter/upsample): the kernel's for cntk,
        the trained network's for dip (``Serial.network``).
    solver : "auto" | "direct" | "eigenpro" | "cg" (cntk).
    prior : "stationary" (default; exact compact kernel) | "meshgrid" | "identity" (dense, small images).
    ridge : relative ridge λ / mean(diag K_SS) (cntk; default 1e-3).
    epochs : iterations/epochs of the iterative solvers (cntk) or of Adam (dip: ``iterations``).
    device, dtype, memory_budget : see ``bigntk.backend`` (cntk; dip takes the device).
    cache_dir : kernel cache directory (default: user cache dir, or ``$BIGNTK_KERNEL_CACHE``).
    truth : ground truth (same shape as image) for PSNR/SSIM in the report.
    client : a ``dask.distributed.Client`` (cntk; None = in process): the kernel products run on its workers,
        which read the kernel store themselves (module docstring); not with ``prior="meshgrid"``.
    **method_options : passed to the method (e.g. ``width``, ``iterations``, ``lr`` for dip); a name
        the method does not take is an error.

    Returns
    -------
    completed : float32 array of the image's shape in [0, 1]; observed pixels equal the input.
    report : JSON-ready dict with the keys of ``bigntk.apps.inpaint.report.REPORT_KEYS`` and more.
    """
    check_client(method, client is not None)
    img, observed = _prepare(image, mask, missing, marker)
    if arch is not None:
        levels = int(getattr(arch, "n_down", levels))
    opts: dict[str, Any] = dict(method_options)
    if method == "cntk":
        opts.update(arch=arch, solver=solver, prior=prior, filter=filter, upsample=upsample, ridge=ridge,
                    epochs=epochs, device=device, dtype=dtype, memory_budget=memory_budget, cache_dir=cache_dir,
                    seed=seed, progress=progress, client=client)
    elif method == "dip":
        if epochs is not None:
            opts.setdefault("iterations", epochs)
        opts.update(arch=arch, filter=filter, upsample=upsample, device=device, seed=seed, progress=progress)
    truth_arr = None
    if truth is not None:
        truth_arr = read_raw(truth) if isinstance(truth, (str, Path)) else np.asarray(truth)
    return run_inpainting(img, observed, method=method, levels=levels, boundary=boundary, truth=truth_arr,
                          **opts)


def inpaint(image: Any, mask: Any = None, **options) -> np.ndarray:
    """Fill the missing pixels of ``image``: the completed image of :func:`inpaint_with_report`.

    Takes the same arguments; returns a float32 array of the image's shape in [0, 1] whose observed
    pixels equal the input's.
    """
    return inpaint_with_report(image, mask, **options)[0]
