"""CMap-scale NTK imputation through EigenPro on the factorised-prior operator → scaling/results/cmap_ntk.json.

Generates CMap-shaped data (``bigntk.apps.cmap.synth``, out of core), aggregates to (cell, drug) pairs,
holds out a random set of non-reference pairs as test columns, and imputes them with the paper's
sparse-regime prior (built as Gram factors: no n × p feature matrix) and ``bigntk.complete(...,
solver="eigenpro")``: 978 genes are 978 outputs of one solve over the training pairs. Reports wall
time per step and per epoch, peak RSS (sampled every 0.2 s), test R² (mean per profile over genes)
against the cell-mean baseline when whole epochs were run, and a projection of the epoch time to more
training pairs: an EigenPro epoch evaluates n² kernel entries and multiplies them by an n × 978 weight
matrix, so it scales as n². ``--steps N`` stops after N EigenPro steps (time and memory only).

    python scaling/bench_cmap_ntk.py --profiles 150000 --drugs 31000 --test 2000 --steps 3
    python scaling/bench_cmap_ntk.py --profiles 30000 --drugs 4000 --test 1000 --epochs 10
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _util import RSSSampler  # scaling/ is on sys.path when run as a script

RESULTS = Path(__file__).resolve().parent / "results" / "cmap_ntk.json"


def r2_per_profile(P: np.ndarray, Y: np.ndarray) -> float:
    ss = ((Y - Y.mean(1, keepdims=True)) ** 2).sum(1)
    return float(np.mean(1.0 - ((P - Y) ** 2).sum(1) / np.maximum(ss, 1e-12)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=int, default=130_000)
    ap.add_argument("--cells", type=int, default=71)
    ap.add_argument("--drugs", type=int, default=20_000)
    ap.add_argument("--test", type=int, default=2000, help="held-out (cell, drug) pairs")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: run the epochs)")
    ap.add_argument("--memory-budget-mb", type=int, default=512, help="tile budget of the operator")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", default=None, help="zarr store path (default: a temporary directory)")
    args = ap.parse_args(argv)

    import torch

    from bigntk.priors.cmap import sparse_regime_prior
    from bigntk.apps.cmap.synth import synthesize
    from bigntk.baselines import CellMean
    from bigntk.operators import FactorisedNTKOperator
    from bigntk.solvers import EigenPro
    from bigntk.store import aggregate

    rss = RSSSampler()
    proc = rss.proc
    tmp = tempfile.TemporaryDirectory()
    store = args.store or os.path.join(tmp.name, "obs.zarr")
    t = time.perf_counter()
    synthesize(store, profiles=args.profiles, cells=args.cells, drugs=args.drugs, seed=args.seed,
               overwrite=True, progress=False)
    table = aggregate(store, progress=False)
    t_data = time.perf_counter() - t
    ref = int(np.bincount(table.cell).argmax())  # the reference line has (nearly) every drug
    rng = np.random.default_rng(args.seed)
    candidates = np.flatnonzero(table.cell != ref)
    test = np.sort(rng.choice(candidates, size=args.test, replace=False))
    train = np.setdiff1d(np.arange(table.n_pairs), test)
    print(f"data: {table.n_pairs} pairs ({args.profiles} profiles) in {t_data:.1f}s; train {train.size}, "
          f"test {test.size}", flush=True)

    cols = np.concatenate([train, test])
    Ytr = table.Y[train]
    prior = sparse_regime_prior(Ytr, table.cell[train], table.drug[train], table.cell[cols], table.drug[cols],
                                reference=ref, n_cells=len(table.cell_names), n_drugs=len(table.drug_names))
    G = table.Y.shape[1]
    op = FactorisedNTKOperator(prior, depth=1, dtype="float32", device="cpu",
                               memory_budget=args.memory_budget_mb * 2**20)
    tr_idx, te_idx = torch.arange(train.size), torch.arange(train.size, cols.size)
    step_times: list[float] = []

    class Stop(Exception):
        pass

    def cb(step, alpha):
        step_times.append(time.perf_counter())
        if args.steps and step >= args.steps:
            raise Stop

    rss0 = proc.memory_info().rss
    t = time.perf_counter()
    solver = EigenPro(epochs=args.epochs, seed=args.seed, progress=False, callback=cb)
    result = None
    try:
        result = solver.fit(op.restrict(tr_idx), Ytr)
    except Stop:
        pass
    t_fit = time.perf_counter() - t
    n = train.size
    per_step = (step_times[-1] - step_times[0]) / max(len(step_times) - 1, 1) if step_times else float("nan")
    res = {"profiles": args.profiles, "drugs": args.drugs, "pairs": int(table.n_pairs), "n_train": int(n),
           "n_test": int(test.size), "genes": int(G), "epochs": args.epochs, "steps_cap": args.steps,
           "steps_run": len(step_times), "data_s": t_data, "fit_s": t_fit,
           "first_step_incl_setup_s": step_times[0] - t if step_times else None, "seconds_per_step": per_step,
           "memory_budget_mb": args.memory_budget_mb, "peak_rss_gb": None, "rss_before_fit_gb": rss0 / 1e9,
           "kernel_entries_per_epoch": float(n) ** 2,
           "factor_forms": op.factor_forms,  # "gram" (gathers) or "embedding" (GEMM per tile)
           "machine": f"{os.cpu_count()} CPUs, no GPU", "load_avg_1m": os.getloadavg()[0]}
    if result is not None:
        res["params"] = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in result.params.items()}
        steps_per_epoch = len(step_times) / args.epochs
        P = op.matmul(result.alpha.to(torch.float64), rows=te_idx, cols=tr_idx).numpy().astype(np.float32)
        truth = table.Y[test]
        base = CellMean().fit(Ytr, table.cell[train], table.drug[train]).predict(table.cell[test], table.drug[test])
        res.update(test_r2_ntk=r2_per_profile(P, truth), test_r2_cell_mean=r2_per_profile(base, truth),
                   seconds_per_epoch=t_fit / args.epochs)
    else:
        res["params"] = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in solver.params_.items()}
        steps_per_epoch = float(np.ceil(n / int(solver.params_["batch_size"])))
    res["steps_per_epoch"] = steps_per_epoch
    epoch_s = per_step * steps_per_epoch
    res["epoch_s_from_steps"] = epoch_s
    res["projected_epoch_s_1p3m_pairs"] = epoch_s * (1.3e6 / n) ** 2
    res["peak_rss_gb"] = rss.stop() / 1e9
    print(json.dumps(res, indent=1), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
