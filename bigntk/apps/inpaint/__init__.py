"""Image inpainting with the CNTK: I/O, masks, padding/depth rule, metrics, methods, reports, demo.

Public entry point: :func:`bigntk.inpaint.inpaint`. Submodules: ``io`` (images and masks),
``geometry`` (reflect padding to 2^levels, minimum-depth rule), ``masks`` (seeded masks),
``metrics`` (PSNR/SSIM/PSNR on missing pixels, peak RSS), ``report`` (JSON reports),
``methods`` (cntk, biharmonic, dip), ``demo`` (:func:`demo_inpainting`).
"""
from . import geometry, io, masks, metrics
from .report import REPORT_KEYS, write_report


def demo_inpainting(out_dir, **kwargs):
    """See :func:`bigntk.apps.inpaint.demo.demo_inpainting` (imported lazily: it pulls matplotlib)."""
    from .demo import demo_inpainting as _demo

    return _demo(out_dir, **kwargs)


__all__ = ["geometry", "io", "masks", "metrics", "REPORT_KEYS", "write_report", "demo_inpainting"]
