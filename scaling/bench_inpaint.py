"""Inpainting timing benchmarks (CNTK vs biharmonic) → scaling/results/bench_inpaint.json.

Cases (select with --cases):
* ``target``: a 448 × 704 RGB natural image with ~19% missing pixels in large holes and scratches,
  CNTK with 6 levels (goal: < 60 s on 2 cores), against biharmonic;
* ``cmp512``: CNTK vs biharmonic wall time at 512² RGB, holes mask (goal: CNTK within 2×);
* ``demo``: the ``bigntk demo`` image (astronaut 128² RGB, 20-px hole + scratches, 5 levels);
* ``holes256`` / ``random256``: ``scaling/inpaint_experiments.py``'s holes mask on its first image and its
  50 %-random mask on its seventh, 256², 6 levels;
* ``hires``: 2048² RGB, holes of 32–96 px (within the 6-level depth rule: a hole of m px needs
  ⌊log2(m + 1)⌋ levels) and scratches on ~5% of the image + 20% random missing (~3M observed
  pixels), window-form kernel,
  polyphase matvec, circulant-preconditioned CG (to tol, capped at --hires-iters): time and peak RSS
  (goal < 8 GB).

Each case is run in its own subprocess (so peak RSS is per case) and merged into the JSON by name.
CG stops at the inpainting default tolerance (relative residual 1e-3) or after --epochs iterations.
The JSON records the 1-minute load average before and after each case.

    python scaling/bench_inpaint.py --cases target,cmp512,hires
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "scaling"))
OUT = REPO / "scaling" / "results" / "bench_inpaint.json"
DATA = REPO.parent / "shared" / "data" / "images" / "ntk_matrix_completion"


def natural(shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    from bigntk.apps.inpaint import io

    img, _ = io.load_image(DATA / "lion.jpg") if (DATA / "lion.jpg").is_file() else (None, None)
    if img is None:
        from skimage import data

        img = data.astronaut() / 255.0
    return np.clip(resize(img, shape, anti_aliasing=True), 0, 1).astype(np.float32)


def holes_mask(shape, target_missing: float, seed: int = 0, sides: tuple[int, int] | None = None) -> np.ndarray:
    """Rectangles (4 with sides H/12…H/7, or with ``sides`` in px as many as ~60% of the target needs)
    and scratches added until ``target_missing`` of the pixels are missing."""
    from bigntk.apps.inpaint import masks

    H, W = shape
    if sides is None:
        count, (lo, hi) = 4, (H // 12, H // 7)
    else:
        (lo, hi), mean_area = sides, ((sides[0] + sides[1]) / 2) ** 2
        count = max(4, int(0.6 * target_missing * H * W / mean_area))
    m = masks.combine(masks.rectangles(shape, count=count, min_side=lo, max_side=hi, seed=seed),
                      masks.strokes(shape, count=6, width=max(3, min(H // 80, 8)), seed=seed + 1))
    k = 0
    while (~m).mean() < target_missing and k < 50:  # add scratches until the target is reached
        k += 1
        m &= masks.strokes(shape, count=2, width=max(3, min(H // 80, 8)), seed=seed + 100 + k)
    return m


def _small_case(case: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(truth, observed, levels) of the demo and of two ``inpaint_experiments`` images at 256²."""
    if case == "demo":
        from bigntk.apps.inpaint.demo import astronaut
        from bigntk.apps.inpaint.masks import center_hole, strokes

        truth = astronaut(128)
        obs = np.roll(center_hole(truth.shape, 20), (-32, -8), axis=(0, 1))  # as demo_inpainting does
        return truth, obs & strokes(truth.shape, count=3, width=2, seed=0), 5
    import inpaint_experiments as ie

    kind, index = ("holes", 0) if case == "holes256" else ("random50", 6)
    path = ie.list_images(8)[index]
    truth = ie.load_square(path, 256)
    return truth, ie.make_mask(kind, truth.shape, seed=sum(map(ord, path.stem))), 6


def run_case(case: str, args) -> dict:
    import torch

    from bigntk.apps.inpaint import inpaint_with_report, masks
    from bigntk.apps.inpaint.metrics import peak_rss_gb

    torch.set_num_threads(args.threads)

    if case == "target":
        shape, levels = (448, 704), 6
        truth, obs = natural(shape), holes_mask(shape, 0.19)
    elif case == "cmp512":
        shape, levels = (512, 512), 6
        truth, obs = natural(shape), holes_mask(shape, 0.15)
    elif case in ("demo", "holes256", "random256"):
        truth, obs, levels = _small_case(case)
        shape = truth.shape[:2]
    elif case == "hires":
        shape, levels = (2048, 2048), args.hires_levels
        truth = natural(shape)
        obs = holes_mask(shape, 0.05, sides=(32, 96)) & masks.random_missing(shape, 0.2, seed=3)
    else:
        raise ValueError(case)
    res = {"case": case, "shape": list(truth.shape), "missing_fraction": float((~obs).mean()),
           "n_observed": int(obs.sum()), "load_avg_1m_before": os.getloadavg()[0]}
    if case != "hires":
        _, rb = inpaint_with_report(truth, obs, method="biharmonic", truth=truth)
        res["biharmonic"] = {k: rb[k] for k in ("psnr", "ssim", "psnr_missing", "time_s")}
    epochs = args.hires_iters if case == "hires" else args.epochs
    t0 = time.perf_counter()
    _, rc = inpaint_with_report(truth, obs, method="cntk", levels=levels, solver="cg", epochs=epochs, truth=truth,
                                progress=False, cache_dir=args.cache_dir, boundary=args.boundary)
    res["cntk"] = {k: rc[k] for k in ("psnr", "ssim", "psnr_missing", "time_s")}
    res["cntk"].update(levels=levels, boundary=args.boundary, padded_shape=rc["info"].get("padded_shape"),
                       threads=torch.get_num_threads(), cg_iterations=rc["info"].get("iterations"), cg_max_iter=epochs,
                       wall_s=time.perf_counter() - t0,
                       info={k: rc["info"].get(k) for k in ("kernel_form", "kernel_cached", "kernel_time_s",
                                                            "solve_time_s", "predict_time_s", "final", "stopped",
                                                            "preconditioner", "inner_iterations",
                                                            "inner_residuals")})
    res["peak_rss_gb"] = peak_rss_gb()
    res["load_avg_1m_after"] = os.getloadavg()[0]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="target,cmp512")
    ap.add_argument("--epochs", type=int, default=100, help="CG iteration cap (target, cmp512)")
    ap.add_argument("--hires-iters", type=int, default=100, help="CG iteration cap (hires)")
    ap.add_argument("--hires-levels", type=int, default=6)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--boundary", default="open", choices=("open", "periodic"), help="CNTK boundary (default open)")
    ap.add_argument("--out", type=Path, default=OUT, help="JSON results file")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads of each case")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(run_case(args.child, args)), flush=True)
        return 0
    data = json.loads(args.out.read_text()) if args.out.is_file() else {"cases": {}}
    data["meta"] = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
                    "date": time.strftime("%Y-%m-%d")}
    for case in args.cases.split(","):
        cmd = [sys.executable, __file__, "--child", case, "--epochs", str(args.epochs), "--hires-iters",
               str(args.hires_iters), "--hires-levels", str(args.hires_levels), "--boundary", args.boundary,
               "--threads", str(args.threads)]
        if args.cache_dir:
            cmd += ["--cache-dir", args.cache_dir]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{case}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            data["cases"][case] = {"case": case, "error": proc.stderr[-500:]}
        else:
            data["cases"][case] = json.loads(line[0][7:])
            print(json.dumps(data["cases"][case], indent=1), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
