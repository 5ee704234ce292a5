"""NTK cross-validation on a CMap-shaped store: exact fold-out against one refit per split.

Generates the store (``bigntk cmap synth``) unless it exists, runs the paper's k-fold protocol with
the exact fold-out formulas (``cv_mode = fold-out``: one factorisation, a small solve per fold) and
times ``--refit-splits`` refits per split to project the refit protocol's time; the first splits'
metrics from both must agree to 1e-6. Writes ``scaling/results/bench_cmap_cv.json``.

    python scaling/bench_cmap_cv.py --profiles 20000 --cells 20 --drugs 2000 --folds 10 --rounds 1
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _util import RSSSampler, write_json  # scaling/ is on sys.path when run as a script


def _store(args) -> Path:
    from bigntk.apps.cmap.synth import synthesize

    path = Path(args.store or Path(tempfile.gettempdir()) / f"bench_cmap_cv_{args.profiles}_{args.cells}_{args.drugs}.zarr")
    if not path.exists():
        synthesize(path, profiles=args.profiles, cells=args.cells, drugs=args.drugs, seed=args.seed, progress=False)
    return path


def _refit_time(table, s, k: int) -> dict:
    """Mean wall time of one refit over the first k splits, and those splits' largest |Δ| to fold-out."""
    from bigntk.apps.cmap.cv import eligible, iter_splits, ntk_predict
    from bigntk.apps.cmap.foldout import FoldOut

    data, ref = eligible(table, s)
    splits = sorted(iter_splits(data, ref, s), key=lambda x: x[1])
    fold, times, diff = FoldOut(data, ref, s), [], 0.0
    for _, c, test, train in splits[:k]:
        t0 = time.perf_counter()
        P = ntk_predict(data, train, test, ref, s)
        times.append(time.perf_counter() - t0)
        diff = max(diff, float(np.abs(P - fold.predict(c, test, train)).max()))
    return {"refit_s_per_split": float(np.mean(times)), "n_splits_total": len(splits), "max_abs_diff": diff}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=None, help="existing observation store (default: generate one)")
    ap.add_argument("--profiles", type=int, default=20_000)
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--drugs", type=int, default=2000)
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--refit-splits", type=int, default=3, help="refits timed to project the refit protocol")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from bigntk.apps.cmap.cv import CVSettings, cross_validate
    from bigntk.backend import set_threads
    from bigntk.store import aggregate, open_store

    threads = set_threads(args.threads)
    table = aggregate(open_store(_store(args)), progress=False)
    load0 = os.getloadavg()
    s = CVSettings(folds=args.folds, rounds=args.rounds, seed=args.seed, dtype="float64")
    rss = RSSSampler()
    rep = cross_validate(table, "ntk", s, progress=False)
    peak = rss.stop()
    out = {"profiles": args.profiles, "cells": args.cells, "drugs": args.drugs, "n_pairs": int(table.n_pairs),
           "folds": args.folds, "rounds": args.rounds, "threads": threads, "cv_mode": rep["cv_mode"],
           "foldout_s": rep["time_s"], "peak_rss_gb": peak / 1e9, "pearson_r": rep["pearson_r"],
           "mean_r2": rep["mean_r2"], "load_before": load0, "load_after": os.getloadavg()}
    if args.refit_splits:
        out.update(_refit_time(table, s, args.refit_splits))
        out["refit_projected_s"] = out["refit_s_per_split"] * out["n_splits_total"]
        out["speedup"] = out["refit_projected_s"] / out["foldout_s"]
    for k, v in out.items():
        print(f"{k:>20}: {v}")
    write_json("bench_cmap_cv", out)
    torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
