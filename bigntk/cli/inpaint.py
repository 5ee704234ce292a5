"""``bigntk inpaint``: fill missing pixels of an image (or a folder of images).

    bigntk inpaint IMAGE --mask MASK [--truth GT] --out OUT.png [--report R.json]
                   [--method cntk|biharmonic|dip] [--levels 6] [--solver auto|direct|eigenpro|cg]
                   [--boundary open|periodic] [--device cpu|cuda] [--dtype float32|float64]
                   [--memory-budget 4GB] [--threads N] [--mask-missing-value zero|nonzero] [--marker V]
                   [--workers N | --scheduler ADDRESS]
    bigntk inpaint --batch DIR --mask-dir MASKS --out OUTDIR [...]

In ``--batch`` mode every image in DIR is paired with the mask of the same stem in --mask-dir
(or a marker value), results go to OUTDIR/<stem>.png and reports to OUTDIR/<stem>.json.
--workers / --scheduler run the CNTK's kernel products on dask.distributed workers (one cluster for
the whole batch; docs/distributed.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ._common import (BOUNDARY_CHOICES, SOLVER_CHOICES, add_cluster_args, add_compute_args, cluster_from_args,
                      compute_kwargs)

__all__ = ["register", "handler"]


def register(subparsers) -> None:
    p = subparsers.add_parser("inpaint", help="fill missing pixels of an image (CNTK, biharmonic, DIP)",
                              description=__doc__)
    p.add_argument("image", nargs="?", help="input image (PNG/JPG/TIFF/.npy)")
    p.add_argument("--mask", help="mask image, nonzero = observed (see --mask-missing-value)")
    p.add_argument("--mask-missing-value", choices=("zero", "nonzero"), default="zero",
                   help="which mask pixels mark MISSING pixels (default: zero)")
    p.add_argument("--marker", type=float, help="instead of --mask: value of missing pixels in IMAGE")
    p.add_argument("--truth", help="ground-truth image for PSNR/SSIM (default: none)")
    p.add_argument("--out", required=True, help="output image (or folder with --batch)")
    p.add_argument("--report", help="JSON report path (default: none; <stem>.json in --batch mode)")
    p.add_argument("--method", choices=("cntk", "biharmonic", "dip"), default="cntk",
                   help="cntk: kernel regression with the CNTK; biharmonic: scikit-image; dip: a trained "
                        "network (1000 Adam steps by default: minutes on a CPU, docs/inpainting.md)")
    p.add_argument("--levels", type=int, default=6, help="down/up-sampling levels (cntk, dip)")
    p.add_argument("--filter", type=int, default=3, help="conv filter size q")
    p.add_argument("--upsample", default="nearest", choices=("nearest", "bilinear"),
                   help="up-sampling of the decoder (cntk, dip)")
    p.add_argument("--boundary", default="open", choices=BOUNDARY_CHOICES,
                   help="open (default): opposite borders do not wrap onto each other; periodic: they do")
    p.add_argument("--prior", default="stationary", choices=("stationary", "meshgrid", "identity"),
                   help="CNTK input prior: stationary random image (exact compact kernel, any size); meshgrid "
                        "or identity need the dense kernel (small images)")
    p.add_argument("--solver", default="auto", choices=SOLVER_CHOICES,
                   help="cntk: auto picks direct for few observed pixels, else conjugate gradients")
    p.add_argument("--ridge", type=float, default=None, help="ridge relative to the mean kernel diagonal (cntk; default 1e-3)")
    p.add_argument("--epochs", type=int, default=None, help="solver epochs or CG iteration cap (cntk; default EigenPro 200 / CG 100) / Adam steps "
                        "(dip; default 1000)")
    p.add_argument("--tol", type=float, default=None,
                   help="CG stopping tolerance, relative residual (cntk; default 1e-3)")
    p.add_argument("--width", type=int, default=None, help="channels of the DIP network (default 64)")
    p.add_argument("--cache-dir", default=None, help="kernel cache directory (default: $BIGNTK_KERNEL_CACHE, else ~/.cache/bigntk/kernels)")
    add_compute_args(p)
    add_cluster_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the solvers' sampling and of DIP's initialisation")
    p.add_argument("--batch", metavar="DIR", help="inpaint every image in DIR")
    p.add_argument("--mask-dir", help="--batch: folder of masks named like the images")
    p.add_argument("--truth-dir", help="--batch: folder of ground truths named like the images")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=handler)


def _one(args, image: Path, mask: Path | None, truth: Path | None, out: Path, report_path: Path | None,
         compute: dict) -> dict:
    from ..apps.inpaint import io
    from ..apps.inpaint.report import write_report
    from ..apps.inpaint import inpaint_with_report

    if mask is None and args.marker is None:
        raise ValueError(f"{image}: give --mask (or --mask-dir) or --marker")
    _check_outputs(out, report_path)
    mask_arr = None
    if mask is not None:
        mask_arr = io.load_mask(mask, "missing" if args.mask_missing_value == "nonzero" else "observed")
    extra = {}
    if args.width is not None:
        extra["width"] = args.width
    if args.tol is not None:
        extra["tol"] = args.tol
    _, stored = io.load_image(image)
    result, report = inpaint_with_report(str(image), mask_arr, method=args.method, levels=args.levels,
                             solver=args.solver, prior=args.prior, filter=args.filter,
                             upsample=args.upsample, boundary=args.boundary, ridge=args.ridge, epochs=args.epochs,
                             cache_dir=args.cache_dir, marker=args.marker, **compute,
                             truth=str(truth) if truth else None, seed=args.seed,
                             progress=not args.quiet, **extra)
    io.save_image(out, result, stored if stored in ("uint8", "uint16") else "uint8")
    report["image"], report["output"] = str(image), str(out)
    if report_path is not None:
        write_report(report_path, report)
    return report


def _check_outputs(out: Path, report_path: Path | None) -> None:
    """Refuse an output or report path that cannot be written, before any computing."""
    from ..apps.inpaint.io import IMAGE_SUFFIXES
    from ..persist import check_output_path

    check_output_path(out, IMAGE_SUFFIXES, "--out")
    if report_path is not None:
        check_output_path(report_path, (".json",), "--report")


def _summary(report: dict) -> str:
    parts = [f"{report['method']}", f"{report['time_s']:.2f} s"]
    for key in ("psnr", "ssim", "psnr_missing"):
        if report.get(key) is not None:
            parts.append(f"{key}={report[key]:.4g}")
    return "  ".join(parts)


def _find(folder: str | None, stem: str) -> Path | None:
    """The image named ``stem`` in ``folder`` (None without a folder)."""
    from ..apps.inpaint.io import IMAGE_SUFFIXES

    if not folder:
        return None
    hits = sorted(p for p in Path(folder).iterdir() if p.stem == stem and p.suffix.lower() in IMAGE_SUFFIXES)
    if not hits:
        raise FileNotFoundError(f"no file named {stem}.* in {folder}")
    return hits[0]


def _batch(args, compute: dict) -> int:
    """Every image of --batch DIR; a failing image is reported on its own line and the others go on."""
    from . import describe
    from ..apps.inpaint.io import IMAGE_SUFFIXES

    folder = Path(args.batch)
    if not folder.is_dir():
        raise FileNotFoundError(f"--batch folder not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"no images in {folder}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for img in images:
        try:
            rep = _one(args, img, _find(args.mask_dir, img.stem), _find(args.truth_dir, img.stem),
                       out_dir / f"{img.stem}.png", out_dir / f"{img.stem}.json", compute)
        except Exception as err:  # noqa: BLE001 - one image's failure must not stop the batch
            failed.append(img.name)
            print(f"{img.name}: error: {describe(err)}", file=sys.stderr)
            continue
        print(f"{img.name}: {_summary(rep)}")
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(images)} images failed ({', '.join(failed)}); "
                           "the others were written to " + str(out_dir))
    return 0


def handler(args) -> int:
    from ..apps.inpaint.pipeline import check_client

    compute = compute_kwargs(args)
    if not (args.batch or args.image):
        raise ValueError("give IMAGE or --batch DIR")
    check_client(args.method, args.workers is not None or args.scheduler is not None)  # before a cluster starts
    with cluster_from_args(args) as client:
        compute["client"] = client
        if args.batch:
            return _batch(args, compute)
        rep = _one(args, Path(args.image), Path(args.mask) if args.mask else None,
                   Path(args.truth) if args.truth else None, Path(args.out),
                   Path(args.report) if args.report else None, compute)
    print(_summary(rep))
    return 0
