"""bigntk's EigenPro against the published EigenPro 2 PyTorch code → scaling/results/bench_eigenpro_peer.json.

The peer is EigenPro/EigenPro-pytorch (package ``eigenpro2``), imported from ``--peer PATH`` (a checkout
of that repository; default /tmp/eigenpro2). It is never vendored: without it the peer runs are skipped
with a message. Get it with e.g.

    git clone https://github.com/EigenPro/EigenPro-pytorch /tmp/eigenpro2

Problem: the ``ntk_problem`` family of ``scaling/bench_solvers.py`` (20-d prior with unit columns,
labels from a random ReLU net, 10 % noise; 3 outputs, or ``--outputs 978``), n training points and
1000 test points. Both solvers use the same depth-1 ReLU NTK on unit inputs,

    κ_1(ρ) = (√(1 − ρ²) + 2ρ(π − arccos ρ)) / π,

ρ formed in float64 and κ evaluated in float32 (bigntk's ``NTKOperator``; for the peer a plain torch
kernel function of rows, ``peer_kernel``). The two kernels are compared on a block before the runs
(max difference printed).

Reference: the direct float64 solve of the float32 kernel matrix (``solve(DenseOperator, "direct")``)
gives the test relative MSE ``direct``. Per solver, in a fresh subprocess with one torch thread: the
wall time to reach test rel. MSE ≤ ``--tol-factor`` × direct (the set-up included; the test error is
evaluated after every epoch from a held float32 (n_test × n) kernel strip, evaluation excluded from the
clock, its memory in both peak RSS figures) and the process CPU time to the same point (less
sensitive to the load of a shared machine), the epochs needed, seconds per epoch, peak RSS
(``ru_maxrss``) and the automatic parameters each picked (s, q, batch, step). Runs alternate between
the solvers (``--repeats``); ratios are bigntk / peer within one repeat.

Runtime shims for the peer (monkeypatched here, its files untouched):

* ``--peer-eigh eigh`` (default): its Nyström eigensystem ``nystrom_kernel_eigh`` calls
  ``torch.lobpcg`` for the top min(s/3, 1000) eigenpairs, which takes ≈ 350 s at s = 2000 on one thread
  with torch 2.13; the shim computes the same eigenpairs with ``torch.linalg.eigh`` (the dense
  eigensolver the peer's commented-out original used through ``scipy.linalg.eigh(eigvals=…)``, an
  argument SciPy has since removed). ``--peer-eigh lobpcg`` runs the peer unchanged.
* ``device="cpu"`` for its ``KernelModel`` (it defaults to CUDA); ``mem_gb`` = ``--peer-mem-gb``.

Run e.g.
    python scaling/bench_eigenpro_peer.py --n 5000 --repeats 2
    python scaling/bench_eigenpro_peer.py --n 20000
    python scaling/bench_eigenpro_peer.py --n 5000 --outputs 978
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "results" / "bench_eigenpro_peer.json"
N_TEST = 1000
SOLVERS = ("bigntk", "peer")


def ntk_problem(n, p=20, l=3, seed=0, noise=0.1):
    """``scaling/bench_solvers.py``'s problem family (the same draws for l = 3)."""
    sys.path.insert(0, str(HERE))
    from bench_solvers import ntk_problem as problem

    return problem(n, p=p, l=l, seed=seed, noise=noise)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def peer_kernel(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """κ_1(x zᵀ) for rows of unit vectors (float64): ρ in float64 (as bigntk's NTKOperator), κ in float32."""
    rho = (x.double() @ z.double().T).clamp_(-1.0, 1.0).to(torch.float32)
    k0 = torch.arccos(rho).mul_(-1.0 / math.pi).add_(1.0)  # (π − arccos ρ)/π
    out = torch.mul(rho, rho).neg_().add_(1.0).clamp_min_(0.0).sqrt_().mul_(1.0 / math.pi)
    return out.addcmul_(rho, k0, value=2.0)


class Reached(Exception):
    """Raised from the epoch monitor once the target is met (stops either solver)."""


class Monitor:
    """Test rel. MSE after every epoch, its time excluded from the clock; stops at the target."""

    def __init__(self, Kte: torch.Tensor, Yte: torch.Tensor, target: float, max_epochs: int):
        self.Kte, self.Yte, self.target, self.max_epochs = Kte, Yte, target, max_epochs
        self.ysq = float((Yte**2).mean())
        self.curve, self.t0, self.pause, self.setup_s, self.reached = [], None, 0.0, None, None
        self.c0, self.cpause = None, 0.0

    def start(self) -> None:
        self.t0, self.pause = time.perf_counter(), 0.0
        self.c0, self.cpause = time.process_time(), 0.0

    def now(self) -> float:
        return time.perf_counter() - self.t0 - self.pause

    def epoch_end(self, epoch: int, weights: torch.Tensor) -> None:
        t_in, c_in = time.perf_counter(), time.process_time()
        sec, cpu = t_in - self.t0 - self.pause, c_in - self.c0 - self.cpause
        pred = (self.Kte @ weights.to(torch.float32)).double()
        mse = float(((pred - self.Yte) ** 2).mean()) / self.ysq
        self.curve.append({"epoch": epoch, "seconds": sec, "cpu_seconds": cpu, "test_rel_mse": mse})
        print(f"    epoch {epoch}: {sec:.2f}s test rel mse {mse:.5g} (target {self.target:.5g})", flush=True)
        self.pause += time.perf_counter() - t_in
        self.cpause += time.process_time() - c_in
        if mse <= self.target:
            self.reached = self.curve[-1]
            raise Reached
        if not math.isfinite(mse):
            raise Reached  # diverged: stop, not reached

    def summary(self) -> dict:
        last = self.curve[-1] if self.curve else None
        r = self.reached
        train_s = (r or last or {}).get("seconds", float("nan")) - (self.setup_s or 0.0)
        epochs = (r or last or {}).get("epoch", 0)
        return {"reached": r is not None, "epochs": r["epoch"] if r else None,
                "time_to_target_s": r["seconds"] if r else None, "setup_s": self.setup_s,
                "cpu_to_target_s": r["cpu_seconds"] if r else None,
                "s_per_epoch": train_s / epochs if epochs else None,
                "final_test_rel_mse": last["test_rel_mse"] if last else None, "curve": self.curve}


def setup_problem(n: int, l: int, seed: int):
    from bigntk.operators import NTKOperator

    Z, Y = ntk_problem(n + N_TEST, l=l, seed=seed)
    op = NTKOperator(Z, device="cpu", dtype="float32")
    tr, te = torch.arange(n), torch.arange(n, n + N_TEST)
    Kte = op.block(te, tr)  # float32 monitoring strip, shared by both solvers' monitors
    return Z, Y, op, tr, te, Kte


# ---------------------------------------------------------------------------------------------- workers
def work_reference(a) -> dict:
    from bigntk.operators import DenseOperator
    from bigntk.solvers import solve

    Z, Y, op, tr, te, Kte = setup_problem(a.n, a.outputs, a.seed)
    # the two kernels on the same pairs: a train block with its diagonal and a test strip
    Xn = torch.from_numpy((Z / np.linalg.norm(Z, axis=0)).T.copy())
    rows = tr[: min(2000, a.n)]
    d_train = float((op.block(rows, rows) - peer_kernel(Xn[rows], Xn[rows])).abs().max())
    d_test = float((Kte[:, rows] - peer_kernel(Xn[te], Xn[rows])).abs().max())
    print(f"  kernel check: max |bigntk − peer kernel| = {d_train:.3g} (train block with diagonal), "
          f"{d_test:.3g} (test strip)", flush=True)
    t = time.perf_counter()
    K = torch.empty(a.n, a.n, dtype=torch.float64)
    step = 2000
    for i in range(0, a.n, step):
        K[i : i + step] = op.block(tr[i : i + step], tr)  # float32 kernel, held in float64
    t_kernel = time.perf_counter() - t
    t = time.perf_counter()
    alpha = solve(DenseOperator(K, device="cpu", dtype="float64"), Y[: a.n], "direct").alpha
    t_solve = time.perf_counter() - t
    del K
    Yte = torch.from_numpy(Y[a.n :])
    pred = Kte.double() @ alpha
    mse = float(((pred - Yte) ** 2).mean() / (Yte**2).mean())
    print(f"  direct: kernel {t_kernel:.1f}s + solve {t_solve:.1f}s, test rel mse {mse:.5g}", flush=True)
    return {"test_rel_mse": mse, "kernel_s": t_kernel, "solve_s": t_solve,
            "kernel_max_diff_train_block": d_train, "kernel_max_diff_test_strip": d_test}


def work_bigntk(a) -> dict:
    from bigntk.solvers import EigenPro

    Z, Y, op, tr, te, Kte = setup_problem(a.n, a.outputs, a.seed)
    Ytr, Yte = Y[: a.n], torch.from_numpy(Y[a.n :])
    rss_before = peak_rss_gb()
    mon = Monitor(Kte, Yte, a.target, a.max_epochs)
    state = {"steps": None}

    def callback(step, alpha):
        if state["steps"] is None:
            state["steps"] = math.ceil(a.n / ep.params_["batch_size"])
        if step % state["steps"] == 0:
            mon.epoch_end(step // state["steps"], alpha)

    ep = EigenPro(epochs=a.max_epochs, seed=a.seed, progress=False, callback=callback)
    setup = ep._setup

    def timed_setup(*args, **kw):
        out = setup(*args, **kw)
        mon.setup_s = mon.now()
        return out

    ep._setup = timed_setup  # instance attribute: times the set-up only, nothing else changes
    mon.start()
    with contextlib.suppress(Reached):
        ep.fit(op.restrict(tr), Ytr)
    p = ep.params_
    params = {"s": p["subsample_size"], "q": p["q"], "batch": p["batch_size"], "step": p["step_size"],
              "lambda_1": p["lambda_1"], "lambda_q1": p["lambda_q1"], "lambda_q1_nystrom": p["lambda_q1_nystrom"],
              "lambda_check": p["lambda_check"], "beta": p["beta"], "memory_budget": op.memory_budget}
    return {**mon.summary(), "params": params, "peak_rss_gb": peak_rss_gb(), "rss_before_solver_gb": rss_before}


def _eigh_shim(samples, kernel_fn, top_q):
    """The peer's ``nystrom_kernel_eigh`` with its ``torch.lobpcg`` call replaced by ``torch.linalg.eigh``:
    the same k = min(top_q + 1, s // 3) leading eigenpairs of K_SS / s (descending), vecs / √s, β."""
    s = samples.shape[0]
    kmat = kernel_fn(samples, samples)
    k = min(top_q + 1, s // 3)
    vals, vecs = torch.linalg.eigh(kmat / s)
    vals, vecs = vals.flip(0)[:k], vecs.flip(1)[:, :k]
    return vals, vecs / math.sqrt(s), kmat.diag().max()


def work_peer(a) -> dict:
    sys.path.insert(0, str(Path(a.peer).resolve()))
    from eigenpro2 import models

    if a.peer_eigh == "eigh":
        models.nystrom_kernel_eigh = _eigh_shim  # models imported it by name
    seen = {}
    asm, opt = models.asm_eigenpro_fn, models.KernelModel._compute_opt_params

    def asm_rec(*args, **kw):
        out = asm(*args, **kw)
        seen["gap"], seen["top_eigval"], seen["beta"] = float(out[1]), float(out[2]), float(out[3])
        return out

    def opt_rec(bs, bs_gpu, beta, top_eigval):
        bs, eta = opt(bs, bs_gpu, beta, top_eigval)
        seen["bs"], seen["eta"], seen["bs_gpu"] = int(bs), float(eta), int(bs_gpu)
        seen["new_top_eigval"] = float(top_eigval)
        return bs, eta

    models.asm_eigenpro_fn, models.KernelModel._compute_opt_params = asm_rec, staticmethod(opt_rec)

    Z, Y, op, tr, te, Kte = setup_problem(a.n, a.outputs, a.seed)
    del op
    # unit rows in float64, as bigntk's cached columns: a float32 row's x·x is 1 − O(1e-7), and κ's infinite
    # slope at ρ = 1 turns that into a 1e-4 error on the diagonal (ρ is rounded to float32 after the GEMM)
    X = torch.from_numpy((Z / np.linalg.norm(Z, axis=0)).T.copy())
    x_train, y_train = X[: a.n].contiguous(), torch.from_numpy(Y[: a.n].astype(np.float32))
    Yte = torch.from_numpy(Y[a.n :])
    rss_before = peak_rss_gb()
    mon = Monitor(Kte, Yte, a.target, a.max_epochs)
    torch.manual_seed(a.seed)
    mon.start()
    model = models.KernelModel(peer_kernel, x_train, y_train.shape[1], device="cpu")
    iterate = model.eigenpro_iterate
    count = {"samples": 0}

    def iterate_mon(samples, x_batch, *args):
        if mon.setup_s is None:
            mon.setup_s = mon.now()
        iterate(samples, x_batch, *args)
        count["samples"] += x_batch.shape[0]
        if count["samples"] % a.n == 0:
            mon.epoch_end(count["samples"] // a.n, model.weight)

    model.eigenpro_iterate = iterate_mon  # instance attribute: counts samples to find the epoch ends
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.suppress(Reached):
            model.fit(x_train, y_train, None, None, epochs=a.max_epochs, mem_gb=a.peer_mem_gb,
                      run_epoch_eval=False, seed=a.seed)
    finally:
        sys.stderr.write(log.getvalue())
    m = re.search(r"SVD time: ([\d.]+)s, top_q: (\d+)", log.getvalue())
    top_q = int(m.group(2)) if m else None
    params = {"s": min(a.n, 2000) if a.n < 100000 else 12000,  # the peer's n_subsamples rule
              "q": None if top_q is None else top_q - 1,  # it flattens eigvals[:top_q − 1] to eigvals[top_q − 1]
              "top_q": top_q, "batch": seen.get("bs"), "step": seen.get("eta"), "bs_gpu": seen.get("bs_gpu"),
              "lambda_1": seen.get("top_eigval"), "gap": seen.get("gap"), "new_top_eigval": seen.get("new_top_eigval"),
              "beta": seen.get("beta"), "svd_s": float(m.group(1)) if m else None, "eigh": a.peer_eigh,
              "mem_gb": a.peer_mem_gb}
    return {**mon.summary(), "params": params, "peak_rss_gb": peak_rss_gb(), "rss_before_solver_gb": rss_before}


def worker(a) -> None:
    torch.set_num_threads(1)
    res = {"reference": work_reference, "bigntk": work_bigntk, "peer": work_peer}[a.worker](a)
    res["torch_threads"] = torch.get_num_threads()
    Path(a.result_file).write_text(json.dumps(res))


# ---------------------------------------------------------------------------------------------- driver
def run_worker(kind: str, a, n: int, l: int, extra: list[str]) -> dict | None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        rf = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--worker", kind, "--n", str(n), "--outputs", str(l), "--seed", str(a.seed),
               "--peer", a.peer, "--peer-mem-gb", str(a.peer_mem_gb), "--peer-eigh", a.peer_eigh,
               "--result-file", str(rf), *extra]
        load = os.getloadavg()[0]
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env)
        wall = time.perf_counter() - t
        if proc.returncode or not rf.exists():
            print(f"  {kind} run failed (exit {proc.returncode})", flush=True)
            return None
        res = json.loads(rf.read_text())
    res.update(load_1min_before=load, load_1min_after=os.getloadavg()[0], process_wall_s=wall)
    return res


def fmt(x, spec=".1f", none="—"):
    return none if x is None else format(x, spec)


def table(results: dict) -> str:
    lines = ["| n | outputs | solver | time to 1.01× direct (s) | CPU time (s) | epochs | set-up (s) | s/epoch | peak RSS (GB) "
             "| s | q | batch | step | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios = ["| n | outputs | repeat | time ratio bigntk/peer | CPU-time ratio | epochs ratio | s/epoch ratio "
              "| peak RSS ratio |", "|---|---|---|---|---|---|---|---|"]
    for key, case in results.items():
        if not key.startswith("n"):
            continue
        for i, rep in enumerate(case.get("runs", [])):
            for name in SOLVERS:
                r = rep.get(name)
                if not r:
                    continue
                p = r["params"]
                t = f"{r['time_to_target_s']:.1f}" if r["reached"] else f"not reached ({r['final_test_rel_mse']:.4g})"
                lines.append(f"| {case['n']} | {case['outputs']} | {name} | {t} | {fmt(r.get('cpu_to_target_s'))} "
                             f"| {fmt(r['epochs'], 'd')} "
                             f"| {fmt(r['setup_s'])} | {fmt(r['s_per_epoch'], '.2f')} | {r['peak_rss_gb']:.2f} "
                             f"| {p['s']} | {fmt(p['q'], 'd')} | {fmt(p['batch'], 'd')} | {fmt(p['step'], '.4g')} "
                             f"| {r['load_1min_before']:.2f} |")
            b, q = rep.get("bigntk"), rep.get("peer")
            if b and q:
                def ratio(k):
                    return f"{b[k] / q[k]:.2f}×" if b.get(k) and q.get(k) else "—"
                ratios.append(f"| {case['n']} | {case['outputs']} | {i + 1} ({rep['order']}) | {ratio('time_to_target_s')} "
                              f"| {ratio('cpu_to_target_s')} | {ratio('epochs')} | {ratio('s_per_epoch')} | {ratio('peak_rss_gb')} |")
    return "\n".join(lines) + "\n\n" + "\n".join(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[5000], help="training sizes (e.g. 5000 20000)")
    ap.add_argument("--outputs", type=int, nargs="+", default=[3], help="output counts (3, 978)")
    ap.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    ap.add_argument("--repeats", type=int, default=1, help="alternating repeats (order flips every repeat)")
    ap.add_argument("--max-epochs", type=int, default=None, help="default 60 for n ≤ 5000, else 30")
    ap.add_argument("--tol-factor", type=float, default=1.01, help="target: test rel. MSE ≤ this × direct")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peer", default="/tmp/eigenpro2", help="checkout of EigenPro/EigenPro-pytorch")
    ap.add_argument("--peer-mem-gb", type=float, default=2.0,
                    help="the peer's mem_gb (it keeps 1 GB aside; bigntk's CPU budget is 2 GiB)")
    ap.add_argument("--peer-eigh", choices=("eigh", "lobpcg"), default="eigh",
                    help="the peer's Nyström eigensolver: eigh shim (default) or its own torch.lobpcg")
    ap.add_argument("--reuse-reference", action="store_true", help="take the direct solve from the JSON")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--worker", choices=("reference", *SOLVERS), help=argparse.SUPPRESS)
    ap.add_argument("--target", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--result-file", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        a.n, a.outputs = a.n[0], a.outputs[0]
        a.max_epochs = a.max_epochs or (60 if a.n <= 5000 else 30)
        return worker(a)

    solvers = list(a.solvers)
    if "peer" in solvers and not (Path(a.peer) / "eigenpro2" / "models.py").exists():
        print(f"peer skipped: no EigenPro 2 checkout at {a.peer} (git clone "
              f"https://github.com/EigenPro/EigenPro-pytorch {a.peer}, or pass --peer PATH)")
        solvers.remove("peer")
    results = json.loads(a.out.read_text()) if a.out.exists() else {}
    for n in a.n:
        for l in a.outputs:
            key = f"n{n}_l{l}"
            max_epochs = a.max_epochs or (60 if n <= 5000 else 30)
            print(f"== n = {n}, {l} outputs, max {max_epochs} epochs", flush=True)
            case = results.get(key, {})
            ref = case.get("reference") if a.reuse_reference else None
            if ref is None:
                ref = run_worker("reference", a, n, l, [])
                if ref is None:
                    continue
            else:
                print(f"  direct (from {a.out.name}): test rel mse {ref['test_rel_mse']:.5g}")
            target = a.tol_factor * ref["test_rel_mse"]
            runs = []
            for i in range(a.repeats):
                order = solvers if i % 2 == 0 else solvers[::-1]
                rep = {"order": " → ".join(order)}
                for name in order:
                    print(f"  [{i + 1}/{a.repeats}] {name} (load {os.getloadavg()[0]:.2f})", flush=True)
                    r = run_worker(name, a, n, l, ["--target", repr(target), "--max-epochs", str(max_epochs)])
                    if r:
                        rep[name] = r
                        print(f"  {name}: {'reached' if r['reached'] else 'NOT reached'} at epoch {r['epochs']}, "
                              f"{fmt(r['time_to_target_s'])}s (set-up {fmt(r['setup_s'])}s), "
                              f"{fmt(r['s_per_epoch'], '.2f')} s/epoch, peak RSS {r['peak_rss_gb']:.2f} GB, "
                              f"params {json.dumps(r['params'])}", flush=True)
                runs.append(rep)
            results[key] = {"n": n, "outputs": l, "n_test": N_TEST, "max_epochs": max_epochs,
                            "tol_factor": a.tol_factor, "target_test_rel_mse": target, "reference": ref,
                            "runs": runs, "torch_threads": 1, "torch": torch.__version__,
                            "command": " ".join(["python", "scaling/bench_eigenpro_peer.py", *sys.argv[1:]])}
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(results, indent=1))
    print()
    print(table(results))


if __name__ == "__main__":
    main()
