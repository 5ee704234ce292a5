"""``bigntk demo``: end-to-end runs on embedded data, printing what they did and the held-out error.

Parts: ``cmap`` — generated CMap-shaped drug-response data (streamed to a zarr observation store,
aggregated per (cell, drug), cross-validated NTK vs mean-over-cell and DNPP); ``inpaint`` —
scikit-image's bundled astronaut with a large hole and scratches, CNTK vs biharmonic.
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
    p.add_argument("--out", type=Path, default=Path("bigntk-demo"), help="folder for stores, figures and reports")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS), help="which parts to run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_args(p)
    p.set_defaults(func=run)


def run_cmap(args: argparse.Namespace) -> dict:
    """Generate a small CMap-shaped data set and cross-validate NTK, DNPP and the cell mean."""
    from ..apps.cmap.cv import CVSettings, cross_validate
    from ..apps.cmap.synth import synthesize
    from ..store import aggregate

    cells, drugs, profiles = 12, 300, 6000
    store = synthesize(args.out / "cmap_obs.zarr", profiles=profiles, cells=cells, drugs=drugs, n_dense=3,
                       seed=args.seed, overwrite=True, progress=not args.quiet)
    table = aggregate(store, progress=not args.quiet)
    print(f"[cmap] generated {profiles} profiles × 978 genes ({cells} cell lines, {drugs} drugs) -> "
          f"{args.out / 'cmap_obs.zarr'}; {table.n_pairs} (cell, drug) pairs after aggregation")
    settings = CVSettings(folds=5, rounds=1, max_cells=3, seed=args.seed, device=args.device,
                          dtype=getattr(args, "dtype", None), memory_budget=getattr(args, "memory_budget", None))
    results = {}
    for method in ("mean", "dnpp", "ntk"):
        rep = cross_validate(table, method, settings, progress=not args.quiet)
        results[method] = {k: rep[k] for k in ("pearson_r", "mean_r2", "mean_cosine", "n_test_profiles", "time_s")}
        print(f"[cmap] {rep['method']:<12s} held-out Pearson r {rep['pearson_r']:.3f}  mean R² {rep['mean_r2']:.3f}  "
              f"cosine {rep['mean_cosine']:.3f}  ({rep['n_test_profiles']} profiles, {rep['time_s']:.1f} s)")
    return results


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
