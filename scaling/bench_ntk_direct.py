"""Whole-column NTK completion with the direct solver: 978 gene rows, n = 5k…20k columns.

All rows share one observed column set (whole profiles missing), so one Cholesky serves every row.
Each size runs in a fresh subprocess so peak RSS is per size. Prints a table, writes
scaling/results/bench_ntk_direct.json.

    python scaling/bench_ntk_direct.py [--sizes 5000 10000 20000] [--dtype float32]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _util import peak_rss_gb, write_json  # noqa: E402


def one_size(n: int, dtype: str, seed: int = 0) -> dict:
    import torch

    import bigntk
    from bigntk import priors

    rng = np.random.default_rng(seed)
    genes, p, observed = 978, 64, 0.9
    Z = rng.standard_normal((p, n)).astype(np.float32)
    Y = np.maximum(rng.standard_normal((genes, p)) @ Z / np.sqrt(p), 0).astype(np.float32)
    obs_cols = rng.random(n) < observed
    mask = np.broadcast_to(obs_cols, Y.shape)
    est = bigntk.NTKCompleter(priors.ExplicitPrior(Z), ridge=1e-3, dtype=dtype, progress=False)
    S = torch.as_tensor(np.flatnonzero(obs_cols))
    est._check_params(); est.prior_ = est._resolved_prior(n)
    t0 = time.perf_counter(); K = est._kernel_tiled(S, S); t_kernel = time.perf_counter() - t0
    del K
    t0 = time.perf_counter()
    est.fit(Y, mask)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    Yh = est.transform()
    t_pred = time.perf_counter() - t0
    rel = float(np.linalg.norm((Yh - Y)[:, ~obs_cols]) / np.linalg.norm(Y[:, ~obs_cols]))
    return {"n_columns": n, "n_observed": int(obs_cols.sum()), "rows": genes, "dtype": dtype,
            "kernel_build_s": t_kernel, "fit_s (kernel + cholesky + solve)": t_fit, "predict_s": t_pred,
            "rel_error_missing": rel, "peak_rss_gb": peak_rss_gb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.dtype)))
        return
    rows = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--dtype", args.dtype],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"n={n:6d} observed={r['n_observed']:6d} kernel {r['kernel_build_s']:6.2f}s  "
              f"fit {r['fit_s (kernel + cholesky + solve)']:6.2f}s  predict {r['predict_s']:6.2f}s  "
              f"peak RSS {r['peak_rss_gb']:.2f} GB  rel.err {r['rel_error_missing']:.3f}", flush=True)
    write_json("bench_ntk_direct", {"runs": rows})


if __name__ == "__main__":
    main()
