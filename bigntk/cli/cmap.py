"""``bigntk cmap ingest|synth|aggregate|cv|impute``: CMap L1000 data to a zarr store, generator,
cross-validation, imputation of every unmeasured pair into a predictions store."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import (SOLVER_CHOICES, add_cluster_args, add_compute_args, add_threads_arg, apply_threads,
                      cluster_from_args, compute_kwargs)

def register(subparsers) -> None:
    p = subparsers.add_parser("cmap", help="CMap L1000: ingest GCT(X), synthesise, cross-validate, impute",
                              description="CMap L1000 drug screens: ingest GCT/GCTX files or generate CMap-shaped "
                                          "data into a zarr observation store, aggregate replicates, cross-validate "
                                          "a method, impute every unmeasured (cell, drug) pair (docs/cmap.md).")
    sub = p.add_subparsers(dest="cmap_command", metavar="ACTION")
    sub.required = True
    _register_data(sub)
    _register_cv(sub)
    _register_impute(sub)


def _register_data(sub) -> None:
    a = sub.add_parser("ingest", help="GCTX/GCT file -> observation store",
                       description="Read a GCTX (HDF5) or GCT (text) file into a zarr observation store "
                                   "(profiles × genes, ids and metadata kept as in the file). Example: "
                                   "bigntk cmap ingest level5.gctx --store obs.zarr --landmark-only")
    a.add_argument("file", help="input .gctx or .gct")
    a.add_argument("--store", required=True, help="output zarr store (directory)")
    a.add_argument("--landmark-only", action="store_true",
                   help="keep landmark genes only (row field pr_is_lm, pr_is_lmark, is_lm or pr_is_landmark)")
    a.add_argument("--cell-field", default="cell_id", help="column metadata field naming the cell line")
    a.add_argument("--drug-field", default="pert_id", help="column metadata field naming the drug (e.g. pert_iname)")
    a.add_argument("--overwrite", action="store_true", help="replace an existing store")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads_arg(a)
    a.set_defaults(func=_ingest)

    s = sub.add_parser("synth", help="generate CMap-shaped data into a store (streamed)",
                       description="Write a CMap-shaped observation store (a reference line, dense and sparse "
                                   "lines, replicates) chunk by chunk. Example: bigntk cmap synth --store s.zarr "
                                   "--profiles 20000 --cells 20 --drugs 2000")
    s.add_argument("--store", required=True, help="output zarr store (directory)")
    s.add_argument("--profiles", type=int, default=20_000, help="profiles (replicates included)")
    s.add_argument("--cells", type=int, default=71, help="cell lines")
    s.add_argument("--drugs", type=int, default=20_000, help="compounds")
    s.add_argument("--genes", type=int, default=978, help="genes (landmarks)")
    s.add_argument("--dense", type=int, default=7, help="number of dense lines besides the reference")
    s.add_argument("--chunk-rows", type=int, default=None, help="profiles per chunk (default: ~32 MB chunks)")
    s.add_argument("--seed", type=int, default=0, help="generator seed")
    s.add_argument("--overwrite", action="store_true", help="replace an existing store")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads_arg(s)
    s.set_defaults(func=_synth)

    g = sub.add_parser("aggregate", help="one profile per (cell, drug) into a new store (streamed)",
                       description="Average the replicates of each (cell, drug) pair (optionally weighted) into "
                                   "a new store. Example: bigntk cmap aggregate --store obs.zarr --out pairs.zarr")
    g.add_argument("--store", required=True, help="input observation store")
    g.add_argument("--out", required=True, help="output store of one profile per pair")
    g.add_argument("--weight", default=None, help="per-profile weight column (weighted consensus)")
    g.add_argument("--max-mb", type=float, default=512, help="memory for the streamed reduction, MB")
    g.add_argument("--overwrite", action="store_true", help="replace an existing store")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads_arg(g)
    g.set_defaults(func=_aggregate)


def _register_cv(sub) -> None:
    c = sub.add_parser("cv", help="cross-validate a method on a store",
                       description="The paper's protocol: rounds × k-fold within each line (the reference line "
                                   "training-only), priors rebuilt from each split's training pairs; NTK by exact "
                                   "fold-out formulas when they apply (docs/cmap.md). Example: bigntk cmap cv "
                                   "--store s.zarr --method ntk --folds 10 --rounds 1 --report ntk.json")
    c.add_argument("--store", required=True, help="observation store (replicates are aggregated)")
    c.add_argument("--method", required=True, choices=["ntk", "mean", "dnpp", "falrtc"], help="method to evaluate")
    c.add_argument("--prior", default="sparse", choices=["sparse", "onehot", "mixed-dnpp", "mixed-falrtc"],
                   help="NTK column prior (docs/cmap.md)")
    c.add_argument("--scheme", default="kfold", choices=["kfold", "loco"],
                   help="k-fold within each line, or leave each (line, drug) out")
    c.add_argument("--folds", type=int, default=10, help="folds per line")
    c.add_argument("--rounds", type=int, default=5, help="repetitions with new fold assignments")
    c.add_argument("--sparse-drugs", type=int, default=None, help="keep only N training drugs of the target line")
    c.add_argument("--min-drugs", type=int, default=10, help="drop lines with fewer drugs")
    c.add_argument("--max-cells", type=int, default=None, help="evaluate only the first N lines (quick runs)")
    c.add_argument("--reference", default=None, help="reference line name (default: the line with most drugs)")
    c.add_argument("--solver", default="auto", help="NTK solver passed to bigntk.complete (e.g. direct, eigenpro)")
    c.add_argument("--solver-kwargs", default="{}", help="JSON dict of extra solver arguments")
    c.add_argument("--baseline-kwargs", default="{}",
                   help='JSON per method, e.g. \'{"dnpp": {"center": false}}\' for z-scored data')
    c.add_argument("--seed", type=int, default=0, help="seed of the fold assignments")
    c.add_argument("--compare", default=None, help="JSON report of another method (same settings): paired t-test")
    c.add_argument("--report", required=True, help="output JSON report (a .md table is written beside it)")
    c.add_argument("--ridge", type=float, default=0.0, help="NTK ridge added to the kernel diagonal")
    c.add_argument("--depth", type=int, default=1, help="NTK depth")
    c.add_argument("--refit", action="store_true",
                   help="NTK: refit once per split instead of the exact fold-out formulas (same numbers, slower)")
    add_compute_args(c)
    add_cluster_args(c)
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=_cv)


def _names(text: str) -> list:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _register_impute(sub) -> None:
    i = sub.add_parser("impute", help="impute every unmeasured (cell, drug) pair into a predictions store",
                       description="Fit on every measured pair (replicates aggregated) and write the predicted "
                                   "profile of every pair to a zarr predictions store (xarray Dataset: imputed, "
                                   "observed), chunk by chunk, resumable. Example: bigntk cmap impute --store "
                                   "obs.zarr --out pred.zarr --gctx pred.gctx")
    i.add_argument("--store", required=True, help="observation store (from ingest or synth)")
    i.add_argument("--out", required=True, help="predictions store (zarr v3; xarray.open_zarr opens it)")
    i.add_argument("--method", default="ntk", choices=["ntk", "mean", "dnpp", "falrtc"],
                   help="NTK completion or a baseline (cell mean, DNPP, FaLRTC)")
    i.add_argument("--prior", default="sparse", choices=["sparse", "onehot", "mixed-dnpp", "mixed-falrtc"],
                   help="NTK column prior (docs/cmap.md)")
    i.add_argument("--cells", type=_names, default=None, metavar="A,B", help="only these lines (cube and fit)")
    i.add_argument("--drugs", type=_names, default=None, metavar="X,Y", help="only these drugs (cube and fit)")
    i.add_argument("--reference", default=None, help="reference line name (default: the line with most drugs)")
    i.add_argument("--depth", type=int, default=1, help="hidden layers of the NTK (default 1)")
    i.add_argument("--ridge", type=float, default=0.0, help="ridge added to the kernel diagonal (default 0)")
    i.add_argument("--nugget", type=float, default=1.5, help="identity nugget of the prior (default 1.5)")
    i.add_argument("--w", type=float, default=0.75, help="weight of the cell-mean block of the sparse prior")
    i.add_argument("--solver", default="auto", choices=SOLVER_CHOICES,
                   help="NTK solver: auto is direct up to 30 000 measured pairs, EigenPro above")
    i.add_argument("--solver-kwargs", default="{}", help="JSON dict of solver options (e.g. epochs)")
    i.add_argument("--baseline-kwargs", default="{}", help='JSON per baseline, e.g. \'{"dnpp": {"k": 5}}\'')
    i.add_argument("--chunk-drugs", type=int, default=None, help="drugs per written chunk (default: by memory)")
    i.add_argument("--gctx", default=None, metavar="FILE", help="also export pairs as a GCTX file")
    i.add_argument("--gctx-pairs", default="unobserved", choices=["unobserved", "observed", "all"],
                   help="which pairs of the selection --gctx exports (default unobserved)")
    i.add_argument("--overwrite", action="store_true", help="replace a predictions store of another configuration")
    i.add_argument("--quiet", action="store_true", help="no progress bars")
    add_compute_args(i)
    add_cluster_args(i)
    i.set_defaults(func=_impute)


def _ingest(args) -> int:
    apply_threads(args)
    from ..apps.cmap.ingest import ingest

    st = ingest(args.file, args.store, landmark_only=args.landmark_only, cell_field=args.cell_field,
                drug_field=args.drug_field, overwrite=args.overwrite, progress=not args.quiet)
    print(st)
    return 0


def _synth(args) -> int:
    apply_threads(args)
    from ..apps.cmap.synth import synthesize

    st = synthesize(args.store, profiles=args.profiles, cells=args.cells, drugs=args.drugs, genes=args.genes,
                    n_dense=args.dense, seed=args.seed, chunk_rows=args.chunk_rows, overwrite=args.overwrite,
                    progress=not args.quiet)
    print(st)
    return 0


def _aggregate(args) -> int:
    apply_threads(args)
    from ..store import aggregate_to_store

    st = aggregate_to_store(args.store, args.out, weight=args.weight, max_bytes=args.max_mb * 2**20,
                            overwrite=args.overwrite, progress=not args.quiet)
    print(st)
    return 0


def _json_option(text: str, flag: str) -> dict:
    """A JSON dict given on the command line (one clear error otherwise)."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{flag} is not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object such as '{{\"epochs\": 5}}', got {text!r}")
    return value


def _read_report(path: str) -> dict:
    """The JSON report of --compare, read before the cross-validation runs."""
    try:
        report = json.loads(Path(path).read_text())
    except ValueError as err:
        raise ValueError(f"--compare {path} is not a JSON report ({err})") from None
    if not isinstance(report, dict) or "per_fold" not in report:
        raise ValueError(f"--compare {path} is not a bigntk cmap cv report (no per_fold)")
    return report


def _cv(args) -> int:
    import dataclasses

    import numpy as np

    from ..apps.cmap.cv import CVSettings, check_comparable, cross_validate, markdown_table, paired_test, report_settings
    from ..persist import atomic_output, check_output_path
    from ..store import aggregate, open_store

    check_output_path(args.report, (".json",), "--report")
    other = _read_report(args.compare) if args.compare else None
    compute = compute_kwargs(args)
    s = CVSettings(scheme=args.scheme, folds=args.folds, rounds=args.rounds, seed=args.seed, min_drugs=args.min_drugs,
                   sparse_drugs=args.sparse_drugs, max_cells=args.max_cells, prior=args.prior,
                   solver=args.solver, solver_kwargs=_json_option(args.solver_kwargs, "--solver-kwargs"),
                   baseline_kwargs=_json_option(args.baseline_kwargs, "--baseline-kwargs"), ridge=args.ridge,
                   depth=args.depth, refit="always" if args.refit else "auto", **compute).validate(args.method)
    table = aggregate(open_store(args.store), progress=not args.quiet)
    if args.reference is not None:
        hits = np.nonzero(table.cell_names == args.reference)[0]
        if not hits.size:
            raise ValueError(f"reference line {args.reference!r} not in the store")
        s = dataclasses.replace(s, reference=int(hits[0]))
    if other is not None:  # refused before any computing
        check_comparable(report_settings(table, s, args.method), other.get("settings", {}))
    with cluster_from_args(args) as client:
        rep = cross_validate(table, args.method, dataclasses.replace(s, client=client), progress=not args.quiet)
    comps = []
    if other is not None:
        comps = [paired_test(rep, other, m) for m in ("pearson_r", "mean_r2")]
        rep["comparison"] = comps
    md = markdown_table([rep], comps)
    report = Path(args.report)
    for path, text in ((report, json.dumps(rep, indent=1)), (report.with_suffix(".md"), md + "\n")):
        with atomic_output(path) as tmp:  # (its folder is created; a failed write leaves no partial file)
            tmp.write_text(text)
    print(md)
    return 0


def _impute(args) -> int:
    import time

    import zarr

    from ..apps.cmap.export import export_gctx
    from ..apps.cmap.impute import impute

    if args.gctx:
        from ..persist import check_output_path

        check_output_path(args.gctx, (".gctx",), "--gctx")
    t0 = time.perf_counter()
    solver_options = _json_option(args.solver_kwargs, "--solver-kwargs")
    baseline_options = _json_option(args.baseline_kwargs, "--baseline-kwargs")
    with cluster_from_args(args) as client:
        out = impute(args.store, args.out, method=args.method, prior=args.prior, depth=args.depth, ridge=args.ridge,
                     nugget=args.nugget, w=args.w, solver=args.solver, cells=args.cells, drugs=args.drugs,
                     reference=args.reference, chunk_drugs=args.chunk_drugs, solver_options=solver_options,
                     baseline_options=baseline_options, overwrite=args.overwrite, progress=not args.quiet,
                     client=client, **compute_kwargs(args))
    group = zarr.open_group(str(out), mode="r")
    C, D, G = group["imputed"].shape
    line = (f"imputed {group.attrs['n_imputed']} pairs ({group.attrs['n_observed']} measured) of {C} cells x {D} "
            f"drugs x {G} genes in {time.perf_counter() - t0:.1f} s -> {out}")
    if args.gctx:
        n = export_gctx(out, args.gctx, cells=args.cells, drugs=args.drugs, pairs=args.gctx_pairs)
        line += f"; {n} profiles -> {args.gctx}"
    print(line)
    return 0
