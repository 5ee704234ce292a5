"""CMap baselines at scale: fit + predict time of cell mean, DNPP and FaLRTC on a generated store.

    python -m bigntk cmap synth --store /tmp/s20k.zarr --profiles 20000 --cells 20 --drugs 2000 --quiet
    python scaling/bench_cmap_baselines.py --store /tmp/s20k.zarr [--methods mean,dnpp,falrtc] [--threads 2]

Trains on every aggregated pair and predicts all unobserved pairs of two cell lines (the two with
most measured drugs after the reference line). Prints one line a method and writes
scaling/results/bench_cmap_baselines.json with the threads, the load average before and after,
the machine and the FaLRTC tensor's memory estimate. Wall and process CPU seconds are both kept (on
a shared machine the wall time is mostly other people's work); FaLRTC's per-iteration times and
backtracking steps are recorded as they happen, and the JSON is rewritten after each iteration.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from _util import RESULTS, RSSSampler, machine, write_json  # scaling/ is on sys.path when run as a script


def _queries(cell: np.ndarray, drug: np.ndarray, lines: np.ndarray, n_drugs: int) -> tuple[np.ndarray, np.ndarray]:
    """(cell (q,), drug (q,)) of every (line, drug) pair of ``lines`` without a measured profile."""
    seen = set(zip(cell.tolist(), drug.tolist()))
    q = [(c, d) for c in lines.tolist() for d in range(n_drugs) if (c, d) not in seen]
    return np.array([c for c, _ in q], np.int64), np.array([d for _, d in q], np.int64)


def _record_iterations(log: list, save) -> None:
    """Wrap FaLRTC's iteration to append (wall s, CPU s, backtracking steps, L) and call ``save()``."""
    import bigntk.baselines.falrtc as F

    step = F._step

    def timed(s, *args):
        w, c = time.perf_counter(), time.process_time()
        n = step(s, *args)
        log.append({"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c, "backtracks": n, "L": s.L})
        save()
        return n

    F._step = timed


def _time_method(name: str, table, qc: np.ndarray, qd: np.ndarray, iterations: int) -> dict:
    """Fit on the whole table, predict the queries; wall and CPU seconds, peak RSS, a sanity figure."""
    from bigntk.baselines import make_baseline

    kw = {"progress": True, "iterations": iterations} if name == "falrtc" else {}
    rss, load = RSSSampler(), list(os.getloadavg())
    t0, c0 = time.perf_counter(), time.process_time()
    model = make_baseline(name, **kw).fit(table.Y, table.cell, table.drug)
    t1 = time.perf_counter()
    P = model.predict(qc, qd)
    t2, c2 = time.perf_counter(), time.process_time()
    return {"method": name, **kw, "load_before": load, "fit_s": t1 - t0, "predict_s": t2 - t1, "total_s": t2 - t0, "cpu_s": c2 - c0,
            "peak_rss_gib": rss.stop() / 2**30, "predictions": list(P.shape), "finite": bool(np.isfinite(P).all())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--methods", default="mean,dnpp,falrtc")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: bigntk.backend.set_threads())")
    ap.add_argument("--falrtc-iterations", type=int, default=20)
    ap.add_argument("--merge", action="store_true", help="keep the other methods' results already in the JSON")
    args = ap.parse_args()
    from bigntk.backend import set_threads
    from bigntk.baselines.falrtc import falrtc_bytes
    from bigntk.store import aggregate, open_store

    threads = set_threads(args.threads)
    load0 = os.getloadavg()
    table = aggregate(open_store(args.store), progress=False)
    counts = np.bincount(table.cell)
    lines = np.argsort(-counts)[1:3]
    n_drugs = int(table.drug.max()) + 1
    qc, qd = _queries(table.cell, table.drug, lines, n_drugs)
    shape = (np.unique(np.concatenate([table.drug, qd])).size, np.unique(table.cell).size, table.Y.shape[1])
    out = {"store": args.store, "pairs": table.n_pairs, "genes": int(table.Y.shape[1]), "cells": int(counts.size),
           "drugs": n_drugs, "query_lines": lines.tolist(), "queries": int(qc.size), "threads": threads,
           "falrtc_tensor": list(shape), "falrtc_estimate_gb": falrtc_bytes(shape) / 1e9,
           "load_before": list(load0), "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "host": machine(), "results": [], "falrtc_iterations": []}
    methods = args.methods.split(",")
    if args.merge and (RESULTS / "bench_cmap_baselines.json").exists():
        old = json.loads((RESULTS / "bench_cmap_baselines.json").read_text())
        out["results"] = [r for r in old.get("results", []) if r["method"] not in methods]
        out["falrtc_iterations"] = [] if "falrtc" in methods else old.get("falrtc_iterations", [])
    _record_iterations(out["falrtc_iterations"], lambda: write_json("bench_cmap_baselines", out))
    print(f"{table.n_pairs} pairs x {table.Y.shape[1]} genes; {qc.size} queries in lines {lines.tolist()}; "
          f"threads {threads}, load {load0[0]:.2f}", flush=True)
    for name in methods:
        r = _time_method(name, table, qc, qd, args.falrtc_iterations)
        r["load_after"] = list(os.getloadavg())
        out["results"].append(r)
        print(f"{name:7s} fit {r['fit_s']:8.2f} s  predict {r['predict_s']:8.2f} s  CPU {r['cpu_s']:8.1f} s  "
              f"peak RSS {r['peak_rss_gib']:.2f} GiB  load {r['load_after'][0]:.2f}", flush=True)
    write_json("bench_cmap_baselines", out)


if __name__ == "__main__":
    main()
