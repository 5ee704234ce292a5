"""Low-rank completion benchmarks: lin-RFM (alpha = 1, 1/2) and baselines.

    python scaling/bench_lowrank.py speed            # d=500, r=5, 10 000 observed entries
    python scaling/bench_lowrank.py speed --only defaults   # every method with its default settings
    python scaling/bench_lowrank.py scale --d 5000 --rank 10 --n-obs 1000000 --iters 3
    python scaling/bench_lowrank.py sweep --d 200 --ranks 1 5 10 20 --factors 1.5 2 3 --seeds 5

Each writes ``scaling/results/lowrank_<name>.json`` (``speed --only defaults``:
``lowrank_speed_defaults.json``) (sweep: ``lowrank_sweep_d<d>.json`` and
``docs/figures/lowrank_sample_complexity_d<d>.png``) (merged per run: results are written after every
case, so an interrupted run keeps what it finished). The test MSE is computed only for reporting,
inside the monitoring callback; stopping uses held-out *observed* entries only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from _util import peak_rss_gb  # scaling/ is on sys.path when run as a script
from bigntk.lowrank import complete_lowrank

RESULTS = Path(__file__).resolve().parent / "results"
#: lin-RFM stopping of the speed and sweep tables: run to a tight held-out tolerance (these tables
#: ask how fast / whether the method gets there; the library's default stops at 1e-4)
TIGHT = {"tol": 1e-12, "patience": 300, "min_delta": 1e-3}
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


def make_problem(d: int, rank: int, n_obs: int, seed: int, m: int | None = None):
    """Y = U V^T / sqrt(r) scaled to RMS 1 (m x d), n_obs entries observed uniformly at random."""
    m = d if m is None else m
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((m, rank)).astype(np.float32)
    V = rng.standard_normal((d, rank)).astype(np.float32)
    Y = U @ V.T / np.sqrt(rank)
    Y /= np.sqrt(float((Y.astype(np.float64) ** 2).mean()))
    flat = rng.choice(m * d, size=n_obs, replace=False)
    mask = np.zeros(m * d, dtype=bool)
    mask[flat] = True
    return Y, mask.reshape(m, d)


class Monitor:
    """Callback: per-iteration wall time and test MSE on the missing entries (reporting only)."""

    def __init__(self, Y: np.ndarray, mask: np.ndarray, target: float = 1e-3, every: int = 1):
        self.Yt = torch.as_tensor(Y)
        self.missing = torch.as_tensor(~mask)
        self.target, self.every = target, every
        self.t0 = time.perf_counter()
        self.hit: tuple[int, float] | None = None
        self.curve: list[tuple[int, float, float]] = []
        self._pause = 0.0

    def __call__(self, it: int, Yhat: torch.Tensor) -> None:
        t_in = time.perf_counter()
        if it % self.every == 0 or self.hit is None:
            diff = (Yhat.cpu().to(torch.float64) - self.Yt)[self.missing]
            mse = float((diff**2).mean())
            elapsed = t_in - self.t0 - self._pause
            if it % self.every == 0:
                self.curve.append((it, elapsed, mse))
            if self.hit is None and mse < self.target:
                self.hit = (it, elapsed)
        self._pause += time.perf_counter() - t_in  # monitoring time is not counted


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "load_avg_1m_at_start": os.getloadavg()[0], "torch": torch.__version__}


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"lowrank_{name}.json"
    path.write_text(json.dumps(payload, indent=1))
    return path


def run_case(Y, mask, method: str, kw: dict, every: int = 1) -> dict:
    mon = Monitor(Y, mask, every=every)
    load0 = os.getloadavg()[0]
    t, cpu = time.perf_counter(), time.process_time()
    res = complete_lowrank(Y, mask, method, callback=mon, **kw)
    wall = time.perf_counter() - t - mon._pause
    cpu = time.process_time() - cpu  # CPU seconds of this process (all threads; includes monitoring)
    test_mse = float(((res.completed - Y)[~mask] ** 2).mean())
    return {"method": method, "params": {k: v for k, v in kw.items() if k != "device"},
            "iterations": res.n_iter, "best_iter": res.best_iter, "seconds": wall, "cpu_seconds": cpu,
            "seconds_per_iter": wall / res.n_iter, "test_mse": test_mse, "val_rel_mse": res.val_error,
            "first_test_mse_below_1e-3": None if mon.hit is None else {"iter": mon.hit[0], "seconds": mon.hit[1]},
            "load_avg_1m": [load0, os.getloadavg()[0]], "curve_every_50": mon.curve[::50]}


def defaults(args) -> None:
    """Every method with its default settings (only the rank given to GD / ALS): time, iterations,
    test MSE. The defaults must finish quickly and, for lin-RFM, reach test MSE < 1e-3. Last, for
    the ratio, lin-RFM run to the tight tolerance of the other tables (``TIGHT``, 5000 iterations)."""
    Y, mask = make_problem(args.d, args.rank, args.n_obs, args.seed)
    cases = [("linrfm", {}), ("linrfm", {"alpha": 1.0}), ("gd", {"rank": args.rank}),
             ("als", {"rank": args.rank}), ("softimpute", {}), ("linrfm", {**TIGHT, "max_iter": 5000})]
    out = {"problem": {"d": args.d, "rank": args.rank, "n_obs": args.n_obs, "seed": args.seed},
           "machine": machine(), "cases": []}
    for method, kw in cases:
        row = run_case(Y, mask, method, {**kw, "device": args.device})
        out["cases"].append(row)
        print(f"defaults {method:10s} {kw!s:50s} iters {row['iterations']:5d} (best {row['best_iter']}) "
              f"time {row['seconds']:6.2f}s (cpu {row['cpu_seconds']:.1f}s) test MSE {row['test_mse']:.2e} "
              f"held-out rel. MSE {row['val_rel_mse']:.2e} threads {torch.get_num_threads()} "
              f"load {row['load_avg_1m']}", flush=True)
        save("speed_defaults" + args.tag, out)


def speed(args) -> None:
    if args.only == ["defaults"]:
        return defaults(args)
    Y, mask = make_problem(args.d, args.rank, args.n_obs, args.seed)
    cases = [("linrfm", {"alpha": 1.0, "max_iter": args.max_iter, **TIGHT}),
             ("linrfm", {"alpha": 0.5, "max_iter": args.max_iter, **TIGHT}),
             ("gd", {"rank": args.rank, "max_iter": args.max_iter}),
             ("softimpute", {"max_iter": 1000})]
    out = {"problem": {"d": args.d, "rank": args.rank, "n_obs": args.n_obs, "seed": args.seed},
           "machine": machine(), "cases": []}
    for method, kw in cases:
        if args.only and method not in args.only:
            continue
        if args.alphas and "alpha" in kw and kw["alpha"] not in args.alphas:
            continue
        kw = {**kw, "device": args.device}
        if method == "linrfm":
            kw.update({k: v for k, v in (("reg", args.reg), ("reg_decay", args.reg_decay)) if v is not None})
        row = run_case(Y, mask, method, kw)
        out["cases"].append(row)
        print(f"{method:10s} {kw.get('alpha', '')!s:4s} iters {row['iterations']:5d} (best {row['best_iter']}) "
              f"time {row['seconds']:7.1f}s ({1e3 * row['seconds_per_iter']:.1f} ms/it, cpu {row['cpu_seconds']:.1f}s) test MSE "
              f"{row['test_mse']:.2e} first<1e-3 {row['first_test_mse_below_1e-3']} load {row['load_avg_1m']}",
              flush=True)
        save("speed" + args.tag, out)


def scale(args) -> None:
    t = time.perf_counter()
    Y, mask = make_problem(args.d, args.rank, args.n_obs, args.seed)
    t_make = time.perf_counter() - t
    out = {"problem": {"d": args.d, "rank": args.rank, "n_obs": args.n_obs, "iters": args.iters},
           "machine": machine(), "make_seconds": t_make, "cases": []}
    proc = psutil.Process()
    for alpha in (0.5, 1.0):
        rss0 = proc.memory_info().rss
        kw = {"alpha": alpha, "max_iter": args.iters, "device": args.device}
        if args.tol is not None:  # stop on the relative held-out MSE (observed entries only)
            kw.update(tol=args.tol, patience=args.patience)
        row = run_case(Y, mask, "linrfm", kw, every=1)
        row["rss_growth_gb"] = (proc.memory_info().rss - rss0) / 1e9
        row["rss_end_gb"] = proc.memory_info().rss / 1e9
        row["process_peak_rss_gb"] = peak_rss_gb()  # includes make_problem's full-size arrays
        out["cases"].append(row)
        print(f"scale d={args.d} alpha={alpha}: {row['iterations']} iters, {row['seconds_per_iter']:.1f} s/it "
              f"(cpu {row['cpu_seconds'] / row['iterations']:.1f} s/it), "
              f"test MSE {row['test_mse']:.3e}, rss {row['rss_end_gb']:.2f} GB (process peak {row['process_peak_rss_gb']:.2f} GB)", flush=True)
        save("scale", out)


def sweep(args) -> None:
    d = args.d
    out = {"d": d, "seeds": args.seeds, "max_iter": args.max_iter, "machine": machine(), "rows": []}
    path = RESULTS / f"lowrank_sweep_d{d}.json"
    if path.exists():  # resume: keep the cells of an earlier run with the same seeds and iteration cap
        old = json.loads(path.read_text())
        if old.get("seeds") == args.seeds and old.get("max_iter") == args.max_iter:
            out["rows"] = old["rows"]
    redo = set(args.redo)
    out["rows"] = [row for row in out["rows"] if row["method"] not in redo]
    done = {(row["rank"], row["n_obs"], row["method"]) for row in out["rows"]}
    methods = [("linrfm", {"alpha": 1.0, **TIGHT}), ("linrfm", {"alpha": 0.5, **TIGHT}), ("softimpute", {}),
               ("gd", {})]
    for r in args.ranks:
        dof = r * (2 * d - r)
        for factor in args.factors:
            n_obs = min(int(factor * dof), d * d - 1)
            for method, kw in methods:
                label = method + (f"_a{kw['alpha']:g}" if "alpha" in kw else "")
                if (r, n_obs, label) in done:
                    continue
                mses, t = [], time.perf_counter()
                for seed in range(args.seeds):
                    Y, mask = make_problem(d, r, n_obs, seed)
                    kw2 = {**kw, "max_iter": args.max_iter, "seed": seed, "device": args.device}
                    if method == "gd":
                        kw2["rank"] = r
                    res = complete_lowrank(Y, mask, method, **kw2)
                    mses.append(float(((res.completed - Y)[~mask] ** 2).mean()))
                success = float(np.mean(np.array(mses) < 1e-3))
                out["rows"].append({"rank": r, "n_obs": n_obs, "dof": dof, "method": label, "success": success,
                                    "test_mse": mses, "seconds": time.perf_counter() - t})
                print(f"r={r} n_obs={n_obs} ({factor}x dof) {label}: {success:.2f} "
                      f"({out['rows'][-1]['seconds']:.0f}s)", flush=True)
                save(f"sweep_d{d}", out)
    figure = Path(args.figure) if args.figure else FIGURES / f"lowrank_sample_complexity_d{d}.png"
    plot_sweep(out, figure)


def plot_sweep(out: dict, figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({row["method"] for row in out["rows"]})
    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels), 3), sharey=True)
    d = out["d"]
    for ax, label in zip(np.atleast_1d(axes), labels):
        rows = [r for r in out["rows"] if r["method"] == label]
        sc = ax.scatter([r["rank"] for r in rows], [r["n_obs"] for r in rows], c=[r["success"] for r in rows],
                        cmap="gray", vmin=0, vmax=1, marker="s", s=80, edgecolors="k")
        ranks = np.linspace(0.5, max(r["rank"] for r in rows) + 0.5, 50)
        ax.plot(ranks, ranks * (2 * d - ranks), "r--", label="r(2d - r)")
        ax.set_title(label)
        ax.set_xlabel("rank r")
    np.atleast_1d(axes)[0].set_ylabel("# observed entries")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.colorbar(sc, ax=list(np.atleast_1d(axes)), label="fraction of seeds with test MSE < 1e-3")
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110, bbox_inches="tight")
    print(f"figure -> {figure}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["speed", "scale", "sweep"])
    ap.add_argument("--d", type=int, default=None)
    ap.add_argument("--rank", type=int, default=None)
    ap.add_argument("--n-obs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-iter", type=int, default=4000)
    ap.add_argument("--iters", type=int, default=3, help="scale: iteration cap")
    ap.add_argument("--tol", type=float, default=None, help="scale: stop at this relative held-out MSE")
    ap.add_argument("--patience", type=int, default=20, help="scale: patience with --tol")
    ap.add_argument("--only", nargs="*", default=None,
                    help="speed: restrict to these methods; 'defaults': every method with its default settings")
    ap.add_argument("--alphas", type=float, nargs="*", default=None, help="speed: only these lin-RFM alphas")
    ap.add_argument("--reg", type=float, default=None, help="speed: lin-RFM starting ridge")
    ap.add_argument("--reg-decay", type=float, default=None, help="speed: lin-RFM ridge decay (1 = fixed)")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    ap.add_argument("--ranks", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--factors", type=float, nargs="*", default=[1.5, 2.5, 4.0],
                    help="sweep: observed entries as multiples of r(2d - r)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--redo", nargs="*", default=[], help="sweep: method labels (e.g. gd) whose cells are rerun")
    ap.add_argument("--figure", default=None, help="sweep: figure path (default docs/figures/...)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    defaults = {"speed": (500, 5, 10_000), "scale": (5000, 10, 1_000_000), "sweep": (60, None, None)}
    d, r, n = defaults[args.mode]
    args.d = args.d or d
    args.rank = args.rank or r
    args.n_obs = args.n_obs or n
    {"speed": speed, "scale": scale, "sweep": sweep}[args.mode](args)


if __name__ == "__main__":
    main()
