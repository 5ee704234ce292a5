"""Every GPU check of the project in one run (< 8 minutes on one H100/H200), one JSON out.

    python scaling/gpu_check.py [--out DIR] [--smoke] [--only SECTION ...]

Sections (each timed, each failure recorded instead of stopping the run):

* ``device``    — the GPU, torch, CUDA;
* ``roofline``  — float32 / TF32 GEMM rate and device-to-device copy bandwidth (the ceilings);
* ``ntk_tile``  — NTK tile throughput (entries/s) and the tile + α product against the GEMM rate;
* ``eigenpro``  — one streamed EigenPro epoch at CMap scale: n = 200 000 columns × 978 outputs,
  factorised prior (71 cells × 20 000 drugs), float32 tiles;
* ``cntk``      — the polyphase CNTK solve (CG, circulant preconditioner) of a 2048² and a 4096² RGB image;
* ``distributed`` — the same EigenPro epoch on two dask workers sharing the one GPU, against one process.

``--smoke`` runs every section at toy sizes on whatever device there is (the CPU here): the script is
tested before a GPU is lent (tests/test_gpu_check.py). scaling/gpu_check.sh wraps it with the GPU tests
(``pytest -m gpu``) and the wheels the device image lacks.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"full": {"n": 200_000, "outputs": 978, "cells": 71, "drugs": 20_000, "cntk": (2048, 4096),
                  "tile": (4096, 200_000), "gemm": 8192},
         "smoke": {"n": 3_000, "outputs": 16, "cells": 6, "drugs": 300, "cntk": (128,), "tile": (512, 3000),
                   "gemm": 512}}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    fn()
    _sync()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync()
    return (time.perf_counter() - t0) / repeat


def device_info(dev: torch.device, size: dict) -> dict:
    out = {"torch": torch.__version__, "device": str(dev), "cuda": torch.version.cuda}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        out.update(name=p.name, memory_gb=p.total_memory / 1e9, multiprocessors=p.multi_processor_count)
    return out


def roofline(dev: torch.device, size: dict) -> dict:
    k = size["gemm"]
    a, b = torch.randn(k, k, device=dev), torch.randn(k, k, device=dev)
    out = {}
    for name, tf32 in (("fp32", False), ("tf32", True)):
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
        out[f"gemm_{name}_tflops"] = 2 * k**3 / _timed(lambda: a @ b) / 1e12
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.empty(int(2**28), device=dev)  # 1 GiB
    out["copy_gb_s"] = 2 * x.numel() * 4 / _timed(lambda: x.clone()) / 1e9
    return out


def _factorised_prior(size: dict, seed: int = 0):
    """A CMap-shaped factorised prior: cell one-hot ⊕ drug embedding (drugs × 978), n (cell, drug) columns."""
    from bigntk import priors

    rng = np.random.default_rng(seed)
    cell = rng.integers(0, size["cells"], size["n"])
    drug = rng.integers(0, size["drugs"], size["n"])
    emb = rng.standard_normal((size["outputs"], size["drugs"])) / np.sqrt(size["outputs"])
    return priors.concat([priors.one_hot(cell, size["cells"]), priors.EmbeddingPrior(drug, emb)],
                         weights=[0.75, 1.0], nugget=1.5)


def ntk_tile(dev: torch.device, size: dict) -> dict:
    from bigntk.operators import ntk_operator

    rows, cols = size["tile"]
    op = ntk_operator(_factorised_prior({**size, "n": cols}), device=dev, dtype="float32")
    r, c = torch.arange(rows, device=dev), torch.arange(cols, device=dev)
    V = torch.randn(cols, size["outputs"], device=dev, dtype=torch.float64)
    t_tile = _timed(lambda: op.block(r, c), repeat=2)
    t_prod = _timed(lambda: op.matmul(V, rows=r, cols=c), repeat=2)
    gemm_flops = 2 * rows * cols * size["outputs"]
    return {"rows": rows, "cols": cols, "outputs": size["outputs"], "tile_s": t_tile,
            "entries_per_s": rows * cols / t_tile, "product_s": t_prod,
            "product_tflops_equivalent": gemm_flops / t_prod / 1e12}


def eigenpro(dev: torch.device, size: dict) -> dict:
    from bigntk.operators import ntk_operator
    from bigntk.solvers import EigenPro

    prior = _factorised_prior(size)
    op = ntk_operator(prior, device=dev, dtype="float32")
    Y = torch.randn(size["n"], size["outputs"], device=dev, dtype=torch.float64)
    t0 = time.perf_counter()
    res = EigenPro(epochs=1, seed=0, progress=False).fit(op, Y)
    _sync()
    wall = time.perf_counter() - t0
    epoch_s = res.history[-1]["seconds"]
    peak = torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None
    return {"n": size["n"], "outputs": size["outputs"], "epoch_s": epoch_s, "setup_s": wall - epoch_s,
            "params": {k: res.params[k] for k in ("q", "batch_size", "step_size", "full_batch")},
            "kernel_entries_per_s": size["n"] ** 2 / epoch_s, "peak_gpu_memory_gb": peak,
            "train_rel_mse": res.history[-1]["train_rel_mse"]}


def cntk(dev: torch.device, size: dict) -> dict:
    from bigntk.kernels import cntk as K
    from bigntk.operators import PolyphaseCNTKOperator
    from bigntk.solvers import ConjugateGradient

    out = {}
    for side in size["cntk"]:
        rng = np.random.default_rng(side)
        mask = rng.random((side, side)) < 0.8
        win = K.compact_kernel(K.dip(6 if side >= 512 else 4), (side, side), form="window", dtype="float64",
                               device=dev)
        op = PolyphaseCNTKOperator.from_kernel(win, mask, device=dev, dtype="float64")
        rgb = torch.as_tensor(rng.random((op.n, 3)), device=dev)
        ridge = 1e-3 * float(op.diag().mean())
        t0 = time.perf_counter()
        res = ConjugateGradient(100, tol=1e-3, ridge=ridge, progress=False).fit(op, rgb)
        _sync()
        out[f"{side}x{side}"] = {"seconds": time.perf_counter() - t0, "iterations": res.iterations,
                                 "converged": res.converged, "n_observed": op.n}
        del op, win
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return out


def distributed(dev: torch.device, size: dict) -> dict:
    from bigntk.distributed import cluster, distributed_operator
    from bigntk.operators import ntk_operator
    from bigntk.solvers import EigenPro

    prior = _factorised_prior(size)
    Y = np.random.default_rng(1).standard_normal((size["n"], size["outputs"]))
    local = EigenPro(epochs=1, seed=0, progress=False).fit(ntk_operator(prior, device=dev, dtype="float32"), Y)
    fixed = {"batch_size": local.params["batch_size"], "step_size": local.params["step_size"],
             "top_q": local.params["q"]}
    with cluster(workers=2, gpus=False, quiet=True) as client:
        op = distributed_operator(client, ntk_operator, prior, n=size["n"], dtype="float32", device=dev,
                                  worker_device=dev.type)
        t0 = time.perf_counter()
        res = EigenPro(epochs=1, seed=0, progress=False, **fixed).fit(op, Y)
        wall = time.perf_counter() - t0
        stats = op.shard_stats()
    rel = float(torch.linalg.norm(res.alpha.cpu() - local.alpha.cpu()) / torch.linalg.norm(local.alpha.cpu()))
    return {"workers": 2, "epoch_s": res.history[-1]["seconds"], "wall_s": wall,
            "in_process_epoch_s": local.history[-1]["seconds"], "rel_diff_vs_in_process": rel,
            "shard_busy_s": [s["busy_s"] for s in stats]}


SECTIONS = {"device": device_info, "roofline": roofline, "ntk_tile": ntk_tile, "eigenpro": eigenpro,
            "cntk": cntk, "distributed": distributed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "scaling" / "results")))
    ap.add_argument("--smoke", action="store_true", help="toy sizes on any device (tests the script)")
    ap.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = SIZES["smoke" if args.smoke else "full"]
    report: dict = {"smoke": args.smoke, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "sections": {}}
    for name in args.only:
        t0 = time.perf_counter()
        try:
            result = SECTIONS[name](dev, size)
            status = "ok"
        except Exception as err:  # noqa: BLE001 - one failing section must not lose the others
            result, status = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}, "failed"
        report["sections"][name] = {"status": status, "seconds": time.perf_counter() - t0, **result}
        print(f"[{name}] {status} in {time.perf_counter() - t0:.1f} s: "
              f"{json.dumps({k: v for k, v in result.items() if k != 'traceback'}, default=str)[:400]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("gpu_check_smoke.json" if args.smoke else "gpu_check.json")
    path.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {path}")
    return 0 if all(s["status"] == "ok" for s in report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
