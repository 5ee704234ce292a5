"""Solver / operator benchmarks → scaling/results/bench_solvers.json.

Sections (each optional, pick with --only):
  tiles     kernel entries/s of the NTK tile builder vs a plain torch.mm of the same output size
  roofline  float32 / float64 GEMM rate and copy bandwidth of this machine (the tile's ceilings)
  ntk       time-to-accuracy, direct vs EigenPro vs CG, NTK regression (n train, labels from a random ReLU net);
            one EigenPro run of max(--ntk-epochs) epochs measured after every epoch (test error, difference to direct)
  ntk_curve EigenPro test error vs wall time at --ntk-n (e.g. 100k, where nothing n × n fits),
            max(--ntk-epochs) epochs, evaluated 4 times per epoch
  stream    streaming EigenPro, n = 100k columns × 8 outputs: set-up + --stream-steps steps (0: one epoch), peak RSS
  cntk      CNTK 320² (80% observed, real image): polyphase matvec time and CG to the PSNR plateau
  cntk_small  the same at 64², s = 3, with the direct solve as reference
  cntk_ridge  320² with ridge 1e-3·mean(diag K)
  cntk_precond  320², ridge 1e-3·mean(diag K), rank-200 Nyström preconditioner sketched in float32
  cntk_bj   320², ridge 1e-3·mean(diag K), block-Jacobi preconditioner on 64 × 64 pixel tiles
  cntk_circ 320², ridge 1e-3·mean(diag K), masked circulant preconditioner (Q = 4, the default):
            the 320²-to-plateau-in-30-s target; PSNR after every iteration
  cntk_circ_q  the same for Q = 1, 2, 8, 16 (set-up cost vs iterations)
  cntk_vs_direct  128², 80 % observed (n ≈ 13k), ridge 1e-3: CG and full-batch EigenPro (3000 epochs)
            against the direct solve, relative difference of the predictions at the missing pixels
  cntk_vs_direct_minibatch  the same with mini-batch EigenPro (full_batch=False, 250 epochs)
  cntk_target  448 × 704 RGB, the inpainting target's hole-and-scratch mask (19 %), circulant CG,
            PSNR on the missing pixels after every iteration (the direct solve does not fit: n ≈ 250k)
  cntk_target_eigenpro  the same problem with full-batch EigenPro, PSNR every 10 epochs
  cntk_eigenpro  full-batch EigenPro on the 320² problem of cntk_circ (ridge 1e-3), PSNR every 10 epochs

All figures are from the machine it runs on (state it in the docs); run e.g.
    python scaling/bench_solvers.py --only tiles ntk stream cntk
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path

import numpy as np
import torch

from bigntk.operators import DenseOperator, NTKOperator, PolyphaseCNTKOperator
from bigntk.solvers import ConjugateGradient, EigenPro, solve

OUT = Path(__file__).resolve().parent / "results" / "bench_solvers.json"
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "ntk_time_to_accuracy.png"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "images" / "ntk_matrix_completion"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def ntk_problem(n, p=20, l=3, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((p, n))
    Zn = Z / np.linalg.norm(Z, axis=0)
    W1, W2 = rng.standard_normal((64, p)), rng.standard_normal((l, 64))
    F = (W2 @ np.maximum(W1 @ Zn, 0)).T / 8
    return Z, F + noise * F.std() * rng.standard_normal(F.shape)


def _best_of(f, repeats: int = 5) -> float:
    """Fastest of ``repeats`` timed calls after one warm-up (the machine is shared: the minimum is the
    figure least disturbed by the other jobs)."""
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_tiles(size=4096, ps=(20, 64), depths=(1, 3)):
    """NTK tile (size², float32 κ from float64 ρ) against torch.mm of the same output, per prior dim p."""
    rng = np.random.default_rng(0)
    idx = torch.arange(size)
    out = {"tile": [size, size], "threads": torch.get_num_threads(), "cases": []}
    for p in ps:
        A, B = torch.randn(size, p), torch.randn(p, size)
        A64, B64 = A.double(), B.double()
        for depth in depths:
            op = NTKOperator(rng.standard_normal((p, size)), depth=depth, device="cpu", dtype="float32")
            t_tile = _best_of(lambda: op.block(idx, idx))
            t_mm = _best_of(lambda: torch.mm(A, B))
            t_mm64 = _best_of(lambda: torch.mm(A64, B64))
            res = {"p": p, "depth": depth, "ntk_tile_s": t_tile, "ntk_entries_per_s": size * size / t_tile,
                   "mm_same_output_s": t_mm, "mm64_same_output_s": t_mm64, "ratio_tile_vs_mm": t_tile / t_mm}
            out["cases"].append(res)
            print(f"tiles p={p} depth={depth}: NTK tile {size}² {t_tile:.3f}s ({res['ntk_entries_per_s']:.3g}/s); "
                  f"torch.mm same output {t_mm:.4f}s (float64 {t_mm64:.4f}s); ratio {res['ratio_tile_vs_mm']:.1f}×")
    return out


def bench_roofline(size=2048, stream_mb=512):
    """This machine's ceilings on the current thread count: float32 / float64 GEMM rate and the memory
    bandwidth of a large copy (read + write), the two roofs a kernel tile sits under."""
    A, B = torch.randn(size, size), torch.randn(size, size)
    A64, B64 = A.double(), B.double()
    flop = 2 * size**3
    t32 = _best_of(lambda: torch.mm(A, B), 3)
    t64 = _best_of(lambda: torch.mm(A64, B64), 3)
    src = torch.empty(stream_mb * 2**20 // 4)
    dst = torch.empty_like(src)
    tcp = _best_of(lambda: dst.copy_(src), 3)
    res = {"threads": torch.get_num_threads(), "sgemm_gflops": flop / t32 / 1e9, "dgemm_gflops": flop / t64 / 1e9,
           "copy_gb_s": 2 * src.numel() * 4 / tcp / 1e9}
    print(f"roofline ({res['threads']} threads): float32 GEMM {res['sgemm_gflops']:.1f} GFLOP/s, float64 "
          f"{res['dgemm_gflops']:.1f} GFLOP/s, copy {res['copy_gb_s']:.1f} GB/s (read + write)")
    return res


class EpochMonitor:
    """EigenPro callback: ``evaluate(alpha) -> dict`` at ``per_epoch`` evenly spaced steps of every epoch
    (or, with ``every_epochs`` = k, at the end of every k-th epoch only).

    Records {"step", "epochs", "seconds", **evaluate(alpha)}; the seconds exclude the evaluations and
    include the solver's set-up (the clock starts at construction).
    Set ``solver`` (the EigenPro instance) before fitting: steps per epoch follow its batch size.
    """

    def __init__(self, n_train: int, evaluate, per_epoch: int = 1, quiet_unless=None, every_epochs: int = 1):
        self.n_train, self.evaluate, self.per_epoch = n_train, evaluate, per_epoch
        self.every_epochs = every_epochs
        self.quiet_unless, self.curve, self.solver = quiet_unless, [], None
        self.t0, self.pause = time.perf_counter(), 0.0

    def __call__(self, step, alpha):
        steps = math.ceil(self.n_train / self.solver.params_["batch_size"])
        epoch_end = step % steps == 0 and (step // steps) % self.every_epochs == 0
        if not epoch_end and (self.per_epoch <= 1 or step % max(1, steps // self.per_epoch)):
            return
        t_in = time.perf_counter()
        rec = {"step": step, "epochs": step / steps, "seconds": t_in - self.t0 - self.pause, **self.evaluate(alpha)}
        self.curve.append(rec)
        if self.quiet_unless is None or rec["epochs"] in self.quiet_unless:
            print(f"  step {step} (epoch {rec['epochs']:.2f}): {rec['seconds']:.1f}s "
                  + " ".join(f"{k} {v:.4g}" for k, v in rec.items() if k not in ("step", "epochs", "seconds")),
                  flush=True)
        self.pause += time.perf_counter() - t_in

    def total_seconds(self) -> float:
        return time.perf_counter() - self.t0 - self.pause


def bench_ntk(n_train=5000, n_test=1000, epochs=(5, 10, 20), seed=0, cg=True):
    Z, Y = ntk_problem(n_train + n_test, seed=seed)
    op = NTKOperator(Z, device="cpu", dtype="float32")
    tr, te = torch.arange(n_train), torch.arange(n_train, n_train + n_test)
    err = lambda pred: float(((pred - Y[n_train:]) ** 2).mean() / (Y[n_train:] ** 2).mean())  # noqa: E731
    out = {"n_train": n_train, "n_test": n_test, "outputs": Y.shape[1]}
    t = time.perf_counter()
    Ktr = op.block(tr, tr).double()
    Kte = op.block(te, tr).double()
    t_kernel = time.perf_counter() - t
    t = time.perf_counter()
    a = solve(DenseOperator(Ktr, device="cpu", dtype="float64"), Y[:n_train], "direct").alpha
    t_direct = time.perf_counter() - t
    pd = (Kte @ a).numpy()
    out["direct"] = {"kernel_s": t_kernel, "solve_s": t_direct, "test_rel_mse": err(pd)}
    print(f"ntk n={n_train}: direct kernel {t_kernel:.1f}s + solve {t_direct:.1f}s, test rel mse {err(pd):.4g}")

    # one streamed run (the kernel is re-evaluated every epoch), measured at the end of every epoch
    def evaluate(a):
        pe = (Kte @ a).numpy()
        return {"test_rel_mse": err(pe), "rel_diff_vs_direct": float(np.linalg.norm(pe - pd) / np.linalg.norm(pd))}

    mon = EpochMonitor(n_train, evaluate, quiet_unless=set(epochs))
    ep = mon.solver = EigenPro(epochs=max(epochs), seed=seed, progress=False, callback=mon)
    r = ep.fit(op.restrict(tr), Y[:n_train])
    curve = mon.curve
    first = next((c for c in curve if c["rel_diff_vs_direct"] <= 1e-3), None)
    out["eigenpro"] = {"params": r.params, "curve": curve, "first_within_1e-3": first}
    reached = f"at {first['epochs']:.0f} epochs, {first['seconds']:.1f}s" if first else "not reached"
    print(f"  eigenpro: rel diff ≤ 1e-3 {reached}")
    if not cg:
        return out
    t = time.perf_counter()
    r = ConjugateGradient(200, tol=1e-6, progress=False).fit(DenseOperator(Ktr, device="cpu", dtype="float64"),
                                                              Y[:n_train])
    dt = time.perf_counter() - t
    pc = (Kte @ r.alpha).numpy()
    out["cg_dense_kernel"] = {"seconds": dt, "iterations": r.iterations, "test_rel_mse": err(pc),
                              "rel_diff_vs_direct": float(np.linalg.norm(pc - pd) / np.linalg.norm(pd))}
    print(f"  cg (held kernel) {r.iterations} it {dt:.1f}s test {err(pc):.4g}")
    return out


def bench_ntk_curve(n_train=100_000, n_test=1000, epochs=5, evals_per_epoch=4, seed=0):
    """EigenPro test error against wall time at an n where no direct or held-kernel reference fits.

    The test error is measured from a (n_test, n_train) float32 kernel strip held for monitoring only
    (its time is excluded from the curve; its memory is in the peak RSS).
    """
    Z, Y = ntk_problem(n_train + n_test, seed=seed)
    op = NTKOperator(Z, device="cpu", dtype="float32")
    tr, te = torch.arange(n_train), torch.arange(n_train, n_train + n_test)
    Yte = torch.from_numpy(Y[n_train:])
    Kte = op.block(te, tr)

    def evaluate(a):
        pred = (Kte @ a.to(torch.float32)).double()
        return {"test_rel_mse": float(((pred - Yte) ** 2).mean() / (Yte**2).mean())}

    mon = EpochMonitor(n_train, evaluate, per_epoch=evals_per_epoch)
    ep = mon.solver = EigenPro(epochs=epochs, seed=seed, progress=False, callback=mon)
    r = ep.fit(op.restrict(tr), Y[:n_train])
    total, curve = mon.total_seconds(), mon.curve
    res = {"n_train": n_train, "n_test": n_test, "outputs": Y.shape[1], "epochs": epochs, "params": r.params,
           "curve": curve, "history": r.history, "total_s": total, "peak_rss_gb": peak_rss_gb(),
           "torch_threads": torch.get_num_threads(), "dense_kernel_gb_float32": n_train**2 * 4 / 2**30}
    print(f"ntk curve n={n_train}: {epochs} epochs in {total:.0f}s, final test rel mse "
          f"{curve[-1]['test_rel_mse']:.4g}, peak RSS {res['peak_rss_gb']:.2f} GB")
    return res


def plot_time_to_accuracy(results: dict, dest: Path) -> None:
    """Test error against wall time: EigenPro curves (n = 5k, 20k, 100k), direct and CG as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for key in sorted(k for k in results if k.startswith(("ntk_n", "ntk_curve_n"))):
        r, n = results[key], key.rsplit("_n", 1)[1].replace("_", ", ")  # e.g. "20000, session4"
        curve = r["curve"] if "curve" in r else r.get("eigenpro", {}).get("curve", [])
        if not curve:
            continue
        line, = ax.plot([c["seconds"] for c in curve], [c["test_rel_mse"] for c in curve], label=f"EigenPro n={n}")
        if "direct" in r:
            d = r["direct"]
            ax.plot(d["kernel_s"] + d["solve_s"], d["test_rel_mse"], "o", color=line.get_color(), label=f"direct n={n}")
        if "cg_dense_kernel" in r:
            c = r["cg_dense_kernel"]
            ax.plot(r["direct"]["kernel_s"] + c["seconds"], c["test_rel_mse"], "s", color=line.get_color(),
                    label=f"CG (held kernel) n={n}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("test relative MSE")
    ax.legend(fontsize=7)
    fig.tight_layout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=110)
    plt.close(fig)
    print(f"figure -> {dest}")


class _Stop(Exception):
    pass


def bench_stream(n=100_000, outputs=8, steps=3, batch=1024, subsample=2000):
    """Streaming EigenPro at n columns × ``outputs`` (labels: random ReLU net of a 20-d prior + noise),
    256 MiB tile budget: ``steps`` steps then stop, or with ``steps=0`` one whole epoch (train error
    recorded); peak RSS printed."""
    Z, Y = ntk_problem(n, p=20, l=outputs)
    op = NTKOperator(Z, device="cpu", dtype="float32", memory_budget=256 * 2**20)
    times = []

    def cb(step, a):
        times.append(time.perf_counter())
        if steps and step >= steps:
            raise _Stop

    t0 = time.perf_counter()
    history = []
    ep = EigenPro(epochs=1, subsample_size=subsample, max_batch=batch, seed=0, progress=False, callback=cb)
    try:
        history = ep.fit(op, Y).history
    except _Stop:
        pass
    setup = times[0] - t0 if times else float("nan")
    per_step = (times[-1] - times[0]) / max(len(times) - 1, 1)
    m = ep.params_["batch_size"]  # min(m*, max_batch): the critical batch may be below the cap
    res = {"n": n, "outputs": outputs, "max_batch": batch, "batch": m, "subsample": subsample,
           "params": ep.params_, "steps_run": len(times), "epoch_history": history,
           "total_s": time.perf_counter() - t0, "first_step_incl_setup_s": setup, "seconds_per_step": per_step,
           "entries_per_step": m * n + subsample * m,
           "epoch_estimate_s": per_step * math.ceil(n / m), "peak_rss_gb": peak_rss_gb(),
           "dense_kernel_gb_float32": n * n * 4 / 2**30}
    print(f"stream n={n} × {outputs}: {len(times)} steps, {per_step:.1f}s/step (batch {m}), "
          f"epoch ≈ {res['epoch_estimate_s']:.0f}s, peak RSS {res['peak_rss_gb']:.2f} GB "
          f"(dense kernel would be {res['dense_kernel_gb_float32']:.0f} GB)")
    return res


def _holes_problem(shape, missing):
    """The inpainting benchmark's RGB image and hole-and-scratch mask (scaling/bench_inpaint.py)."""
    from bench_inpaint import holes_mask, natural  # scaling/ is on sys.path when run as a script

    return natural(shape).astype(np.float64), holes_mask(shape, missing)


def _cntk_problem(shape, levels, observed=0.8, holes=None):
    """(img (H·W, C), observed mask (H, W), window kernel, kernel seconds, predict(alpha) → (n_missing, C)
    float64 predictions at the missing pixels, psnr(alpha) on them): barbara grey with a random ``observed`` fraction, or with ``holes`` (missing fraction) the
    RGB hole-and-scratch problem of the inpainting target."""
    from PIL import Image

    from bigntk.kernels import cntk

    H, W = shape
    if holes is None:
        img = np.asarray(Image.open(DATA / "barbara_GT.png").convert("L"), dtype=np.float64) / 255.0
        img = img[:H, :W, None]
        mask = np.random.default_rng(0).random((H, W)) < observed
    else:
        img, mask = _holes_problem((H, W), holes)
    t = time.perf_counter()
    win = cntk.compact_kernel(cntk.dip(levels), (H, W), form="window", device="cpu")
    t_kernel = time.perf_counter() - t
    img = img.reshape(H * W, -1)
    unobs = np.flatnonzero(~mask.reshape(-1))
    full = PolyphaseCNTKOperator.from_kernel(win, None, device="cpu", dtype="float64")
    pixels = torch.as_tensor(np.flatnonzero(mask.reshape(-1)))

    def predict(alpha):
        return full.matmul(torch.as_tensor(alpha), rows=unobs, cols=pixels).numpy().reshape(len(unobs), -1)

    def psnr(alpha):
        return float(10 * np.log10(1.0 / np.mean((np.clip(predict(alpha), 0, 1) - img[unobs]) ** 2)))

    return img, mask, win, t_kernel, predict, psnr


def bench_cntk_eigenpro(shape=(448, 704), levels=6, holes=0.19, epochs=150, every=10, ridge_rel=1e-3,
                        observed=0.8):
    """Full-batch EigenPro (float32 fast product) on a ``_cntk_problem`` (default: the inpainting target's
    RGB hole-and-scratch problem): PSNR on the missing pixels every ``every`` epochs, set-up included."""
    img, mask, win, t_kernel, _, psnr = _cntk_problem(shape, levels, observed, holes)
    op32 = PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype="float32")
    y = img[op32.pixels.numpy()]
    ridge = ridge_rel * float(op32.diag().double().mean())
    shown = set(range(0, epochs + 1, max(every, epochs // 10)))
    mon = EpochMonitor(op32.n, lambda a: {"psnr_db": psnr(a)}, quiet_unless=shown, every_epochs=every)
    mon.solver = EigenPro(epochs=epochs, ridge=ridge, seed=0, progress=False, callback=mon)
    r = mon.solver.fit(op32, y)
    out = {"shape": list(shape), "channels": int(img.shape[1]), "holes_missing": holes, "levels": levels,
           "observed": int(op32.n), "ridge_rel": ridge_rel, "kernel_window_s": t_kernel, "params": r.params,
           "curve": mon.curve, "seconds": mon.total_seconds(), "psnr_unobserved_db": psnr(r.alpha)}
    print(f"cntk EigenPro {shape}: {epochs} epochs in {out['seconds']:.0f}s, PSNR {out['psnr_unobserved_db']:.2f} dB "
          f"(q {r.params['q']}, step {r.params['step_size']:.3g})", flush=True)
    return out


def bench_cntk(size=320, levels=6, observed=0.8, max_iter=100, rank=50, ridge_rel=0.0, sketch32=False,
               tile=None, precond="nystrom", period=None, every=10, shape=None, holes=None):
    """CG on the polyphase CNTK operator; barbara (grey, size², random ``observed`` fraction), or with
    ``shape`` and ``holes`` (missing fraction) the RGB hole-and-scratch problem of the inpainting target."""
    H, W = shape or (size, size)
    img, mask, win, t_kernel, _, psnr = _cntk_problem((H, W), levels, observed, holes)
    op = PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype="float64")
    op32 = PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype="float32")
    y = img[op.pixels.numpy()]
    for o in (op, op32):
        o.matmul(y)
    t = time.perf_counter(); op32.matmul(y); t32 = time.perf_counter() - t
    t = time.perf_counter(); op.matmul(y); t64 = time.perf_counter() - t

    curve = []
    t = time.perf_counter()

    def monitor(it, x):  # PSNR on the missing pixels every 10 iterations (not timed)
        nonlocal t
        if it % every == 0:
            t_pause = time.perf_counter()
            a = torch.zeros(op.n, x.shape[1], dtype=torch.float64)
            a[:] = x
            curve.append({"iteration": it, "seconds": t_pause - t0_ref[0], "psnr_db": psnr(a)})
            print(f"  it {it}: {curve[-1]['seconds']:.1f}s PSNR {curve[-1]['psnr_db']:.2f} dB", flush=True)
            t0_ref[0] += time.perf_counter() - t_pause

    t0_ref = [time.perf_counter()]
    ridge = ridge_rel * float(op.diag().mean())
    kw = {"preconditioner": precond, "period": period}
    if tile:  # block-Jacobi over square tiles of observed pixels (set-up timed inside CG)
        from bigntk.operators.cntk import tile_blocks
        kw = {"preconditioner": "block_jacobi", "blocks": tile_blocks(op.pixels, (H, W), tile)}
    r = ConjugateGradient(max_iter, tol=1e-8, rank=rank, ridge=ridge, seed=0, progress=False,
                          callback=monitor, **kw).fit(op, y, sketch_operator=op32 if sketch32 else None)
    dt = time.perf_counter() - t0_ref[0]
    res = {"shape": [H, W], "channels": int(img.shape[1]), "holes_missing": holes, "levels": levels,
           "observed": int(op.n), "kernel_window_s": t_kernel,
           "matvec_float32_s": t32, "matvec_float64_s": t64, "cg_seconds_excl_monitoring": dt,
           "cg_iterations": r.iterations, "cg_stopped": r.stopped, "psnr_unobserved_db": psnr(r.alpha),
           "psnr_curve": curve, "nystrom_rank": rank, "ridge_rel": ridge_rel,
           "sketch_float32": sketch32, "block_jacobi_tile": tile, "preconditioner": precond, "period": period,
           "total_seconds_incl_kernel": t_kernel + dt}
    if op.n <= 6000:  # reference: the direct solve (tiny ridge) where it fits
        t = time.perf_counter()
        a = solve(op, y, "direct", ridge=1e-6 * float(op.diag().mean()))
        res["direct_seconds"], res["direct_psnr_db"] = time.perf_counter() - t, psnr(a)
    print(f"cntk {H}×{W} s={levels}: window {t_kernel:.2f}s, matvec f32 {t32*1e3:.0f} ms / f64 {t64*1e3:.0f} ms; "
          f"CG {r.iterations} it in {dt:.1f}s ({r.stopped}), PSNR on missing pixels {res['psnr_unobserved_db']:.2f} dB")
    return res


def bench_cntk_vs_direct(size=128, levels=6, epochs=3000, ridge_rel=1e-3, full_batch=True, every=25):
    """CG and EigenPro against the direct solve on a CNTK problem that fits (barbara, 80 % observed,
    ridge ridge_rel·mean diag K): relative difference of the predictions at the missing pixels.

    EigenPro runs in full-batch mode (the default on this fast-product operator; ``full_batch=False``:
    the mini-batch rule), recorded every ``every`` epochs."""
    img, mask, win, _, pred, _ = _cntk_problem((size, size), levels)
    op, op32 = (PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype=dt) for dt in ("float64", "float32"))
    y = img[op.pixels.numpy()]
    ridge = ridge_rel * float(op.diag().mean())

    def rel(a):
        return float(np.linalg.norm(pred(a) - pd) / np.linalg.norm(pd))

    t = time.perf_counter()
    pd = pred(solve(op, y, "direct", ridge=ridge))
    out = {"shape": [size, size], "levels": levels, "observed": int(op.n), "ridge_rel": ridge_rel,
           "direct_s": time.perf_counter() - t}
    t = time.perf_counter()
    ac = solve(op, y, "cg", ridge=ridge, max_iter=200, tol=1e-10, progress=False)
    out["cg"] = {"seconds": time.perf_counter() - t, "rel_diff_vs_direct": rel(ac)}
    print(f"cntk {size}² n={op.n}: direct {out['direct_s']:.1f}s; CG {out['cg']['seconds']:.1f}s "
          f"rel diff {out['cg']['rel_diff_vs_direct']:.2g}", flush=True)
    shown = {e for e in range(0, epochs + 1, max(every, epochs // 12))}
    mon = EpochMonitor(op.n, lambda a: {"rel_diff_vs_direct": rel(a)}, quiet_unless=shown, every_epochs=every)
    mon.solver = EigenPro(epochs=epochs, ridge=ridge, seed=0, progress=False, callback=mon, full_batch=full_batch)
    r = mon.solver.fit(op32, y)
    first = next((c for c in mon.curve if c["rel_diff_vs_direct"] <= 1e-3), None)
    out["eigenpro"] = {"params": r.params, "curve": mon.curve, "first_within_1e-3": first,
                       "seconds": mon.total_seconds()}
    print(f"  EigenPro ({'full' if r.params['full_batch'] else 'mini'}-batch, s/q {r.params['q']}): "
          f"first within 1e-3: {first}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=["tiles", "ntk", "stream", "cntk", "cntk_small"],
                    help="sections to run (none: only --plot)")
    ap.add_argument("--ntk-n", type=int, default=5000)
    ap.add_argument("--ntk-epochs", type=int, nargs="*", default=[5, 10, 20],
                    help="EigenPro epochs to print (ntk: one run of the largest, recorded every epoch)")
    ap.add_argument("--skip-cg", action="store_true", help="ntk: no held-kernel CG reference")
    ap.add_argument("--stream-steps", type=int, default=3, help="stream: steps to run (0: one whole epoch)")
    ap.add_argument("--plot", action="store_true", help=f"write the time-to-accuracy figure ({FIGURE.name})")
    args = ap.parse_args()
    import os

    machine = {"cpus": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
               "torch": torch.__version__, "load_avg_1m": os.getloadavg()[0]}
    for name in args.only:
        fn = {"tiles": bench_tiles, "roofline": bench_roofline,
              "ntk": lambda: bench_ntk(args.ntk_n, epochs=tuple(args.ntk_epochs), cg=not args.skip_cg),
              "stream": lambda: bench_stream(steps=args.stream_steps),
              "ntk_curve": lambda: bench_ntk_curve(args.ntk_n, epochs=max(args.ntk_epochs)),
              "cntk": bench_cntk, "cntk_small": lambda: bench_cntk(64, levels=3, max_iter=50),
              "cntk_ridge": lambda: bench_cntk(max_iter=50, ridge_rel=1e-3),
              "cntk_precond": lambda: bench_cntk(max_iter=80, rank=200, ridge_rel=1e-3, sketch32=True),
              "cntk_bj": lambda: bench_cntk(max_iter=80, ridge_rel=1e-3, tile=64),
              "cntk_circ": lambda: bench_cntk(max_iter=15, ridge_rel=1e-3, precond="circulant", every=1),
              "cntk_target": lambda: bench_cntk(max_iter=12, ridge_rel=1e-3, precond="circulant", every=1,
                                                shape=(448, 704), holes=0.19),
              "cntk_vs_direct": bench_cntk_vs_direct,
              "cntk_target_eigenpro": bench_cntk_eigenpro,
              "cntk_eigenpro": lambda: bench_cntk_eigenpro((320, 320), holes=None, epochs=200),
              "cntk_vs_direct_minibatch": lambda: bench_cntk_vs_direct(epochs=250, full_batch=False, every=1),
              "cntk_circ_q": lambda: {f"Q={q}": bench_cntk(max_iter=15, ridge_rel=1e-3, precond="circulant",
                                                          period=q, every=1) for q in (1, 2, 8, 16)}}[name]
        key = {"ntk": f"ntk_n{args.ntk_n}", "ntk_curve": f"ntk_curve_n{args.ntk_n}"}.get(name, name)
        value = fn()
        if isinstance(value, dict):
            value["machine"] = machine
        # re-read before writing: other sections may have been written by a concurrent run
        results = json.loads(OUT.read_text()) if OUT.exists() else {}
        results[key] = value
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {OUT}")
    if args.plot:
        plot_time_to_accuracy(json.loads(OUT.read_text()), FIGURE)


if __name__ == "__main__":
    main()
