"""Scale-out on dask.distributed: strong and weak scaling of the NTK EigenPro epoch and the CNTK CG iteration.

    python scaling/bench_distributed.py [--only ntk_strong ntk_weak cntk_strong] [--n 50000] [--workers 1 2]
                                       [--outputs 8] [--quick]

Every run uses single-thread worker processes (``LocalCluster``, ``threads_per_worker=1``) and the same
EigenPro parameters (seed, batch, step) for every worker count, so epochs do the same work. Per step it
records the wall time and each shard's compute time on its worker; *overhead* is the step time not spent
computing in the slowest shard (scheduling, transfers, the client's bookkeeping). A linear cost model

    t_step = a · (kernel entries per worker) + b · (bytes moved) + c

is fitted to all steps and used to project an epoch at full-CMap size on 8 GPUs, from a per-GPU kernel
throughput given by ``--gpu-entries-per-s`` (not measured here: a GPU run of scaling/gpu_check.sh
measures it). Writes scaling/results/bench_distributed.json and docs/figures/distributed_scaling.png.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import write_json  # noqa: E402

FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "distributed_scaling.png"


def _ntk_problem(n: int, outputs: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((20, n))
    Y = np.maximum(rng.standard_normal((outputs, 20)) @ (Z / np.linalg.norm(Z, axis=0)), 0).T
    return Z, Y.astype(np.float64)


def _epoch(op, Y, params: dict | None, epochs: int = 1) -> dict:
    """One timed EigenPro epoch on ``op`` with fixed parameters; per-step wall times via the callback, and
    the shards' busy time from the end of the first step on (the set-up's tiles excluded)."""
    from bigntk.solvers import EigenPro

    stamps: list[float] = []
    busy: list[float] = []

    def callback(step, _a):
        stamps.append(time.perf_counter())
        if step == 1 or step == -1:
            busy.append(max(s["busy_s"] for s in op.shard_stats()))

    kw = {} if params is None else {"batch_size": params["batch_size"], "step_size": params["step_size"],
                                    "top_q": params["q"]}
    ep = EigenPro(epochs=epochs, seed=0, progress=False, callback=callback, **kw)
    t0 = time.perf_counter()
    res = ep.fit(op, Y)
    t_end = time.perf_counter()
    busy_after = max(s["busy_s"] for s in op.shard_stats()) - busy[0]
    wall_after = t_end - stamps[0]
    steps = np.diff(np.array([stamps[0] - (stamps[1] - stamps[0]) if len(stamps) > 1 else t0] + stamps))
    return {"seconds": res.history[-1]["seconds"], "setup_s": time.perf_counter() - t0 - res.history[-1]["seconds"],
            "steps": len(stamps), "step_s": steps.tolist(), "params": res.params,
            "train_rel_mse": res.history[-1]["train_rel_mse"],
            "overhead_fraction": max(0.0, 1.0 - busy_after / wall_after) if wall_after > 0 else None}


def run_ntk(n: int, workers: int, outputs: int, params: dict | None) -> dict:
    from bigntk.distributed import cluster, distributed_operator
    from bigntk.operators import ntk_operator

    Z, Y = _ntk_problem(n, outputs)
    with cluster(workers=workers, quiet=True) as client:
        op = distributed_operator(client, ntk_operator, Z, n=n, memory_budget=2 * 2**30)
        out = _epoch(op, Y, params)
        stats = op.shard_stats()
        out.update(workers=workers, n=n, outputs=outputs, transfer_bytes=op.transfer_bytes, shards=stats)
        worker_rss = client.run(lambda: __import__("psutil").Process().memory_info().rss)
        out["worker_peak_rss_gb"] = {w: r / 1e9 for w, r in worker_rss.items()}
    out["entries_per_worker_per_step"] = params_batch(out) * n / workers
    print(f"ntk n={n} workers={workers}: epoch {out['seconds']:.2f} s ({out['steps']} steps, "
          f"overhead {100 * out['overhead_fraction']:.1f} %), set-up {out['setup_s']:.1f} s")
    return out


def params_batch(rec: dict) -> int:
    return int(rec["params"]["batch_size"])


def run_cntk(size: int, workers: int, iters: int = 5) -> dict:
    from bigntk.distributed import cluster, distributed_operator
    from bigntk.kernels import cntk
    from bigntk.operators import PolyphaseCNTKOperator
    from bigntk.solvers import ConjugateGradient

    store = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-distributed-cntk-{size}.zarr"
    cntk.compact_kernel(cntk.dip(6), (size, size), form="window", dtype="float64", device="cpu", store=store)
    mask = np.random.default_rng(0).random((size, size)) < 0.8
    rgb = np.random.default_rng(1).random((int(mask.sum()), 3))
    with cluster(workers=workers, quiet=True) as client:  # workers read the kernel store themselves
        op = distributed_operator(client, PolyphaseCNTKOperator.from_store, store, mask, n=rgb.shape[0],
                                  shape=(size, size), dtype="float64")  # the image's grid, not the window's
        ridge = 1e-3 * float(op.diag().mean())
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # a fixed number of iterations, not a tolerance, is timed
            warnings.simplefilter("ignore")
            res = ConjugateGradient(iters, tol=1e-14, ridge=ridge, progress=False).fit(op, rgb)
        wall = time.perf_counter() - t0
        stats = op.shard_stats()
    per_it = np.diff([0.0] + [h["seconds"] for h in res.history])
    busy = max(st["busy_s"] for st in stats) / max(res.iterations + 1, 1)
    out = {"size": size, "workers": workers, "iterations": res.iterations, "seconds": wall,
           "product_s_per_iteration": busy,
           "iteration_s": per_it.tolist(), "median_iteration_s": float(np.median(per_it[1:] if iters > 1 else per_it)),
           "shards": stats, "transfer_bytes": op.transfer_bytes}
    print(f"cntk {size}² workers={workers}: CG iteration {out['median_iteration_s']:.3f} s (median), of which the "
          f"slowest shard's product {busy:.3f} s (the circulant preconditioner runs on the client)")
    return out


def fit_cost_model(records: list[dict]) -> dict:
    """Least squares t_step = a·entries_per_worker + b·bytes_per_step + c over the NTK runs."""
    rows, t = [], []
    for r in records:
        per_step = np.median(r["step_s"][1:]) if len(r["step_s"]) > 1 else r["step_s"][0]
        rows.append([r["entries_per_worker_per_step"], r["transfer_bytes"] / max(r["steps"], 1), 1.0])
        t.append(per_step)
    A, t = np.array(rows), np.array(t)
    coef, *_ = np.linalg.lstsq(A, t, rcond=None)
    pred = A @ coef
    return {"a_s_per_entry": float(coef[0]), "b_s_per_byte": float(coef[1]), "c_s": float(coef[2]),
            "measured_step_s": t.tolist(), "model_step_s": pred.tolist(),
            "max_rel_error": float(np.max(np.abs(pred - t) / t))}


def project(model: dict, gpu_entries_per_s: float, gpus: int = 8, n: int = 66_000, outputs: int = 978,
            batch: int = 8192) -> dict:
    """An EigenPro epoch at full-CMap size on ``gpus`` GPUs: kernel time from the assumed GPU rate,
    transfers and per-step overhead from the fitted model."""
    steps = int(np.ceil(n / batch))
    entries = batch * n / gpus
    bytes_step = (2 * batch + 6000) * outputs * 8
    t_step = entries / gpu_entries_per_s + model["b_s_per_byte"] * bytes_step + model["c_s"]
    return {"gpus": gpus, "n": n, "outputs": outputs, "batch": batch, "steps": steps,
            "gpu_entries_per_s_assumed": gpu_entries_per_s, "epoch_s": steps * t_step, "step_s": t_step}


def figure(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("ntk_strong", "NTK EigenPro epoch"), ("cntk_strong", "CNTK CG iteration")):
        recs = result.get(key, [])
        if recs:
            recs = sorted(recs, key=lambda r: r["workers"])  # relative to the fewest workers, in any --workers order
            w = [r["workers"] for r in recs]
            t = [r.get("median_iteration_s", r["seconds"]) for r in recs]
            axes[0].plot(w, [t[0] / x for x in t], "o-", label=label)
    axes[0].plot([1, 2], [1, 2], "k:", label="ideal")
    axes[0].set_xlabel("workers (1 thread each)")
    axes[0].set_ylabel("speed-up over 1 worker")
    axes[0].set_title("strong scaling")
    axes[0].legend()
    recs = sorted(result.get("ntk_weak", []), key=lambda r: r["workers"])
    if recs:
        w = [r["workers"] for r in recs]
        axes[1].plot(w, [r["seconds"] for r in recs], "o-", label="epoch time (n ∝ workers)")
        axes[1].set_xlabel("workers (1 thread each)")
        axes[1].set_ylabel("epoch seconds")
        axes[1].set_title("weak scaling, NTK EigenPro")
        axes[1].legend()
    else:
        axes[1].axis("off")
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)
    print(f"wrote {FIGURE}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", default=["ntk_strong", "ntk_weak", "cntk_strong"])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--outputs", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cntk-size", type=int, default=1024)
    ap.add_argument("--gpu-entries-per-s", type=float, default=2e11)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test of the script)")
    ap.add_argument("--plot", action="store_true",
                    help="only redraw the figure from scaling/results/bench_distributed.json (runs nothing)")
    args = ap.parse_args()
    if args.plot:
        import json

        from _util import RESULTS

        figure(json.loads((RESULTS / "bench_distributed.json").read_text()))
        return
    n, size = (4000, 256) if args.quick else (args.n, args.cntk_size)
    result: dict = {"settings": vars(args), "load_before": os.getloadavg()}
    from bigntk.solvers import EigenPro  # noqa: F401  (import cost outside the timings)

    if "ntk_strong" in args.only:
        first = run_ntk(n, args.workers[0], args.outputs, None)
        result["ntk_strong"] = [first] + [run_ntk(n, w, args.outputs, first["params"]) for w in args.workers[1:]]
    if "ntk_weak" in args.only:
        base = n // max(args.workers)
        first = run_ntk(base, args.workers[0], args.outputs, None)
        result["ntk_weak"] = [first] + [run_ntk(base * w, w, args.outputs, None) for w in args.workers[1:]]
    if "cntk_strong" in args.only:
        result["cntk_strong"] = [run_cntk(size, w) for w in args.workers]
    ntk = result.get("ntk_strong", []) + result.get("ntk_weak", [])
    if len(ntk) >= 3:
        result["cost_model"] = fit_cost_model(ntk)
        result["projection_8_gpus_full_cmap"] = project(result["cost_model"], args.gpu_entries_per_s)
    result["load_after"] = os.getloadavg()
    write_json("bench_distributed" + ("_quick" if args.quick else ""), result)
    figure(result)


if __name__ == "__main__":
    main()
