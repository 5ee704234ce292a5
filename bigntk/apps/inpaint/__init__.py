"""Image inpainting with the CNTK: I/O, masks, padding/depth rule, metrics, methods, reports, demo.

Public entry points: :func:`inpaint` (the completed image, also ``bigntk.inpaint``) and
:func:`inpaint_with_report` (the image and its JSON-ready report), both in ``pipeline``.
Submodules: ``io`` (images and masks), ``geometry`` (padding, minimum-depth rule), ``masks``
(seeded masks), ``metrics`` (PSNR/SSIM/PSNR on missing pixels, peak RSS), ``report`` (JSON reports),
``methods`` (cntk, biharmonic, dip), ``demo`` (:func:`demo_inpainting`; matplotlib is imported when
it runs).
"""
from . import geometry, io, masks, metrics
from .demo import demo_inpainting
from .methods import METHODS
from .pipeline import inpaint, inpaint_with_report, run_inpainting
from .report import REPORT_KEYS, write_report

__all__ = ["inpaint", "inpaint_with_report", "run_inpainting", "METHODS", "geometry", "io", "masks", "metrics",
           "REPORT_KEYS", "write_report", "demo_inpainting"]
