"""``bigntk demo``: end-to-end runs on embedded data, printing what they did and the held-out error.

Parts: ``cmap`` — generated CMap-shaped drug-response data (streamed to a zarr observation store,
aggregated per (cell, drug), cross-validated NTK vs mean-over-cell and DNPP, a predicted-vs-measured
and per-line figure); ``inpaint`` — scikit-image's bundled astronaut with a large hole and scratches,
CNTK vs biharmonic.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import add_device_args, compute_kwargs

PARTS = ("cmap", "inpaint")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on embedded data",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("--out", type=Path, default=Path("bigntk-demo"), help="folder for stores, figures and reports (default bigntk-demo)")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS), help="which parts to run (default: cmap inpaint)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data and the folds (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_args(p)
    p.set_defaults(func=run)


def run_cmap(args: argparse.Namespace) -> dict:
    """Generate a small CMap-shaped data set and cross-validate NTK, DNPP and the cell mean; writes the figure."""
    from ..apps.cmap.demo import demo_cmap

    return demo_cmap(args.out, seed=args.seed, device=args.device, dtype=args.dtype,
                     memory_budget=args.memory_budget, progress=not args.quiet)


def run_inpaint(args: argparse.Namespace) -> dict:
    """Inpaint the bundled astronaut (CNTK vs biharmonic); writes the figure."""
    from ..apps.inpaint import demo_inpainting

    res = demo_inpainting(args.out, device=args.device, progress=not args.quiet)
    return {m: {k: res[m][k] for k in ("psnr", "ssim", "psnr_missing", "time_s")} for m in ("cntk", "biharmonic")}


def run(args: argparse.Namespace) -> int:
    compute_kwargs(args)  # applies --threads
    args.out.mkdir(parents=True, exist_ok=True)
    runners = {"cmap": run_cmap, "inpaint": run_inpaint}
    results = {part: runners[part](args) for part in args.parts}
    (args.out / "demo.json").write_text(json.dumps(results, indent=2))
    print(f"reports and figures in {args.out}/")
    return 0
