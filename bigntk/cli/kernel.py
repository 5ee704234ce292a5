"""``bigntk kernel build|info|heatmap``: build, inspect and plot stored CNTKs."""
from __future__ import annotations

import argparse
import json
import time

from ._common import add_compute_args, compute_kwargs

#: what ``bigntk kernel heatmap --out`` writes: the raw row (.npy) or a figure
HEATMAP_SUFFIXES = (".npy", ".png", ".pdf", ".svg")


def _shape(text: str):
    try:
        H, W = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 512x512, got {text!r}") from None
    return H, W


def _pixel(text: str):
    try:
        i, j = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"pixel must look like 104,14, got {text!r}") from None
    return i, j


def register(subparsers) -> None:
    p = subparsers.add_parser("kernel", help="build / inspect / plot convolutional NTKs (CNTK)",
                              description="Build the exact compact CNTK of a DIP-style encoder-decoder into a "
                                          "zarr store, print a store's metadata, or plot one pixel's kernel row.")
    sub = p.add_subparsers(dest="kernel_command", metavar="ACTION")
    sub.required = True

    b = sub.add_parser("build", help="build the compact CNTK of dip(levels) into a zarr store",
                       description="Build (or find intact and reuse) the compact CNTK of dip(levels) for an image "
                                   "size. Example: bigntk kernel build --levels 6 --shape 512x512 --store k.zarr")
    b.add_argument("--levels", type=int, default=6, help="down/up-sampling stages s")
    b.add_argument("--shape", type=_shape, required=True, help="image size HxW, e.g. 512x512")
    b.add_argument("--filter", type=int, default=3, help="convolution filter size q")
    b.add_argument("--convs-per-level", type=int, default=1, help="convolutions per down/up-sampling stage")
    b.add_argument("--upsample", default="nearest", choices=["nearest", "bilinear"], help="up-sampling of the decoder")
    b.add_argument("--activation", default="relu", choices=["relu", "leaky_relu"], help="activation after each conv")
    b.add_argument("--negative-slope", type=float, default=0.01, help="slope of leaky_relu")
    b.add_argument("--prior", default="stationary", choices=["stationary", "identity"],
                   help="input prior: stationary random image, or identity (one-hot pixels)")
    b.add_argument("--form", default="auto", choices=["auto", "window", "full"],
                   help="window (far-field form, size independent) where it holds; full otherwise")
    b.add_argument("--workers", type=int, default=1, help="Dask threads for streamed blocks")
    b.add_argument("--store", required=True, help="path ending in .zarr, or a cache directory (required)")
    b.add_argument("--overwrite", action="store_true", help="replace a store holding a different kernel")
    add_compute_args(b)
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)

    i = sub.add_parser("info", help="print a stored kernel's metadata",
                       description="Print a kernel store's metadata (architecture, prior, form, checksum) as JSON. "
                                   "Example: bigntk kernel info k.zarr --verify")
    i.add_argument("store", help="kernel store (.zarr) written by kernel build or the inpaint cache")
    i.add_argument("--verify", action="store_true", help="recompute the checksum")
    i.set_defaults(func=_info)

    h = sub.add_parser("heatmap", help="plot the kernel row of one pixel (paper Fig. 4)",
                       description="Plot K((i, j), ·) of one pixel as an image with labelled axes and colour bar. "
                                   "Example: bigntk kernel heatmap k.zarr --pixel 104,14 --out fig.png")
    h.add_argument("store", help="kernel store (.zarr) written by kernel build or the inpaint cache")
    h.add_argument("--pixel", type=_pixel, required=True, help="i,j (row, column)")
    h.add_argument("--shape", type=_shape, default=None, help="image size for window stores (default: the store's own size)")
    h.add_argument("--subtract-far", action="store_true", help="show K − c_far (the far-field constant), which shows the local structure")
    h.add_argument("--out", required=True, help="output image (png/pdf) or .npy for the raw row")
    h.set_defaults(func=_heatmap)


def _build(args) -> int:
    from ..kernels.cntk import dip, ensure_store, open_kernel
    from ..kernels.cntk.build import resolve_form

    arch = dip(args.levels, filter=args.filter, convs_per_level=args.convs_per_level, upsample=args.upsample,
               activation=args.activation, negative_slope=args.negative_slope)
    compute = compute_kwargs(args)
    t0 = time.perf_counter()
    # verify=True: a damaged store (missing chunk, altered data) is rebuilt, never reported as built
    path, built = ensure_store(arch, args.shape, args.prior, args.store,
                               window=resolve_form(arch, args.shape, args.prior, args.form), workers=args.workers,
                               progress=not args.quiet, overwrite=args.overwrite, verify=True, **compute)
    k = open_kernel(path, shape=args.shape, device=compute["device"])
    print(f"{type(k).__name__} {k.image_shape[0]}x{k.image_shape[1]} period={k.period} "
          f"form={k.meta.get('form')} key={k.meta.get('key', '')[:16]} {'built' if built else 'intact, reused'} "
          f"in {time.perf_counter() - t0:.2f} s: {path}")
    return 0


def _info(args) -> int:
    from ..kernels.cntk import open_kernel

    k = open_kernel(args.store, verify=args.verify)
    meta = {key: v for key, v in k.meta.items() if key != "arch"}
    meta["arch"] = repr(k.arch)
    meta["null_space_dim"] = k.null_space_dim
    if args.verify:
        meta["verified"] = True
    print(json.dumps(meta, indent=2, default=str))
    return 0


def _heatmap(args) -> int:
    import numpy as np

    from ..kernels.cntk import open_kernel
    from ..persist import check_output_path
    from ..viz import kernel_heatmap

    check_output_path(args.out, HEATMAP_SUFFIXES, "--out")  # savefig would add .png to a bare name
    k = open_kernel(args.store, shape=args.shape)
    if args.out.endswith(".npy"):
        np.save(args.out, kernel_heatmap(k, args.pixel, subtract_far=args.subtract_far, as_array=True))
    else:
        fig = kernel_heatmap(k, args.pixel, subtract_far=args.subtract_far)
        fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out}")
    return 0
