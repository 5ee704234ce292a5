"""Peak memory of a default-settings EigenPro completion against the default memory budget.

``bigntk.complete(Y, mask, Z, solver="eigenpro", epochs=1)`` on n columns × m rows with a random
p-feature prior (5 % of the columns unobserved), default settings otherwise: the memory budget is the
backend's default (a quarter of free memory, at most 2 GiB on the CPU), the Nyström subsample is capped
by it (``bigntk.solvers.eigenpro._subsample_size``). Prints and writes
``scaling/results/bench_memory_plan.json`` (peak RSS sampled every 0.1 s, RSS before the solve).

    python scaling/bench_memory_plan.py --n 100000 --rows 8 --threads 2
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
from _util import RSSSampler, write_json  # scaling/ is on sys.path when run as a script


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="columns")
    ap.add_argument("--rows", type=int, default=8, help="rows (outputs of the solve)")
    ap.add_argument("--features", type=int, default=20, help="prior features per column")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    import bigntk
    from bigntk.backend import memory_budget, set_threads
    from bigntk.solvers.eigenpro import SETUP_BYTES_PER_ENTRY, _subsample_size

    threads = set_threads(args.threads)
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((args.features, args.n)).astype(np.float32)
    Y = np.maximum(rng.standard_normal((args.rows, args.features)) @ Z, 0).astype(np.float32)
    mask = np.ones_like(Y, bool)
    mask[:, rng.random(args.n) < 0.05] = False
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    budget = memory_budget("cpu")
    rss, t0, load0 = RSSSampler(0.1), time.perf_counter(), os.getloadavg()
    bigntk.complete(Y, mask, Z, depth=1, solver="eigenpro", epochs=1, progress=False)
    out = {"n": args.n, "rows": args.rows, "threads": threads, "seconds": time.perf_counter() - t0,
           "peak_rss_gb": rss.stop() / 1e9, "rss_before_solve_gb": before / 1e9, "memory_budget_gb": budget / 1e9,
           "subsample_size": _subsample_size(int(mask[0].sum()), False, budget),
           "setup_bytes_per_entry": SETUP_BYTES_PER_ENTRY, "load_before": load0, "load_after": os.getloadavg()}
    for k, v in out.items():
        print(f"{k:>22}: {v}")
    write_json("bench_memory_plan", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
