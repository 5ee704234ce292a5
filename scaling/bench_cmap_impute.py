"""Benchmark `bigntk cmap impute`: every unmeasured pair of a synthetic CMap-shaped store.

    python scaling/bench_cmap_impute.py                       # 20 000 profiles, 20 lines x 2 000 drugs
    python scaling/bench_cmap_impute.py --profiles 1300000 --cells 71 --drugs 20000 \\
        --store /tmp/cmap_1p3m.zarr --keep-store --subset-cells 5 --subset-drugs 2000 --label 1p3m-subset

Times synthesis (skipped when ``--keep-store`` finds the store), then :func:`bigntk.apps.cmap.impute.impute`
(aggregate + fit + every chunk; the time to the first written chunk is the aggregate + fit part),
and reads the result back with xarray. Records threads, the machine's load (``os.getloadavg``) and
peak RSS; writes/updates ``scaling/results/bench_cmap_impute.json`` under ``--label``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from _util import RSSSampler, machine, peak_rss_gb  # scaling/ is on sys.path when run as a script


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", type=int, default=20_000)
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--drugs", type=int, default=2_000)
    ap.add_argument("--store", default="/tmp/bench_cmap_impute/obs.zarr")
    ap.add_argument("--out", default=None, help="predictions store (default: beside --store)")
    ap.add_argument("--keep-store", action="store_true", help="reuse --store when it exists")
    ap.add_argument("--subset-cells", type=int, default=None, help="impute only the first N lines")
    ap.add_argument("--subset-drugs", type=int, default=None, help="impute only the first N drugs")
    ap.add_argument("--method", default="ntk")
    ap.add_argument("--prior", default="sparse")
    ap.add_argument("--solver", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--memory-budget", default=None)
    ap.add_argument("--label", default="20k")
    ap.add_argument("--progress", action="store_true", help="progress bars on stderr")
    return ap.parse_args()


def _store(args: argparse.Namespace) -> float:
    from bigntk.apps.cmap.synth import synthesize

    if args.keep_store and Path(args.store).exists():
        return 0.0
    t = time.perf_counter()
    synthesize(args.store, profiles=args.profiles, cells=args.cells, drugs=args.drugs, overwrite=True,
               progress=False)
    return time.perf_counter() - t


def gemm_gflops(k: int, n_out: int, rows: int = 2048, repeats: int = 3) -> float:
    """This machine's float32 GEMM rate (GFLOP/s, best of ``repeats``) at the prediction's shape:
    (rows, k) tile @ (k, n_out) weights, k = training pairs, n_out = genes."""
    import torch

    A, B = torch.rand(rows, k), torch.rand(k, n_out)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        A @ B
        best = min(best, time.perf_counter() - t)
    return 2 * rows * k * n_out / best / 1e9


def _record(label: str, result: dict) -> Path:
    path = Path(__file__).resolve().parent / "results" / "bench_cmap_impute.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.exists() else {}
    old[label] = result
    path.write_text(json.dumps(old, indent=1) + "\n")
    return path


def main() -> None:
    args = _args()
    import numpy as np
    import xarray as xr

    from bigntk.apps.cmap.impute import impute
    from bigntk.backend import set_threads
    from bigntk.store import open_store

    threads = set_threads(args.threads)
    Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t_synth = _store(args)
    st = open_store(args.store)
    cells = None if args.subset_cells is None else st.cell_names[: args.subset_cells].tolist()
    drugs = None if args.subset_drugs is None else st.drug_names[: args.subset_drugs].tolist()
    out = Path(args.out or Path(args.store).with_name(f"pred-{args.label}.zarr"))
    shutil.rmtree(out, ignore_errors=True)
    rss, first = RSSSampler(), []
    t0 = time.perf_counter()
    impute(st, out, method=args.method, prior=args.prior, solver=args.solver, cells=cells, drugs=drugs,
           memory_budget=args.memory_budget, progress=args.progress,
           callback=lambda k, n: first.append(time.perf_counter() - t0) if k == 1 else None)
    t_impute = time.perf_counter() - t0
    peak = rss.stop()
    ds = xr.open_zarr(out)
    C, D, G = ds["imputed"].shape
    assert bool(np.isfinite(ds["imputed"].isel(cell=0).values).all())
    a = ds.attrs
    result = {"profiles": st.n_profiles, "store_cells": len(st.cell_names), "store_drugs": len(st.drug_names),
              "genes": st.n_genes, "cube": [C, D, G], "train_pairs": a["n_train"], "imputed_pairs": a["n_imputed"],
              "chunk_drugs": a["plan"]["chunk_drugs"], "chunks": int(np.prod(ds["done"].shape)), "method": args.method, "prior": args.prior,
              "synth_s": round(t_synth, 2), "impute_s": round(t_impute, 2),
              "aggregate_fit_first_chunk_s": round(first[0], 2) if first else None,
              "pairs_per_s": round(a["n_imputed"] / t_impute, 1), "peak_rss_gib_impute": round(peak / 2**30, 3),
              "ru_maxrss_gb": round(peak_rss_gb(), 3), "threads": threads, "loadavg_before": load_before,
              "loadavg_after": os.getloadavg(), "cpu_count": os.cpu_count(), "machine": machine()}
    if args.method == "ntk" and first:
        # the prediction phase (after the first chunk: aggregate and fit are done) is one kernel row over
        # the training pairs per imputed pair, multiplied by the (n_train, G) weights
        phase_s = t_impute - first[0]
        flops = 2.0 * G * a["n_train"] * a["n_imputed"] * (1 - 1 / max(1, result["chunks"]))
        gemm = gemm_gflops(a["n_train"], G)
        result.update({"predict_phase_s": round(phase_s, 1), "predict_gflops": round(flops / phase_s / 1e9, 1),
                       "gemm_gflops_same_shape": round(gemm, 1),
                       "predict_fraction_of_gemm": round(flops / phase_s / 1e9 / gemm, 3)})
    print(json.dumps(result, indent=1))
    print("written", _record(args.label, result))


if __name__ == "__main__":
    main()
