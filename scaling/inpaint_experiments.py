"""Inpainting experiments on natural images: CNTK vs biharmonic vs DIP.

For each image (../shared/data/images, read-only; centre-cropped and resized to --size) and each
mask setting — ``holes`` (seeded rectangles + strokes + text) and ``random50`` (50% random missing
pixels) — run every method, record PSNR / SSIM / PSNR on missing pixels / wall time, and write

* scaling/results/inpaint_experiments.json   (every run, full reports)
* docs/results_inpainting.md                (tables: per image and averages)
* docs/figures/inpainting_panels_<mask>.png (truth | corrupted | CNTK | biharmonic | DIP)

Runs are appended to the JSON as they finish, and a rerun skips the (image, mask, method) triples
already there, so nothing is lost when the script is interrupted.

    python scaling/inpaint_experiments.py --size 128 --levels 6 --images 8 --dip-iters 500
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bigntk.apps.inpaint import io, masks  # noqa: E402
from bigntk.apps.inpaint.report import to_jsonable  # noqa: E402
from bigntk.apps.inpaint import inpaint_with_report  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "images"
RESULTS = REPO / "scaling" / "results" / "inpaint_experiments.json"
PANELS = Path(tempfile.gettempdir()) / "bigntk_inpaint_panels"  # completed images for the figure


def list_images(limit: int) -> list[Path]:
    folder = DATA / "ntk_matrix_completion"
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    return files[:limit]


def load_square(path: Path, size: int) -> np.ndarray:
    """Centre crop to a square, resize to size × size (anti-aliased), float32 RGB or grey in [0, 1]."""
    from skimage.transform import resize

    img, _ = io.load_image(path)
    H, W = img.shape[:2]
    s = min(H, W)
    r0, c0 = (H - s) // 2, (W - s) // 2
    img = img[r0:r0 + s, c0:c0 + s]
    return np.clip(resize(img, (size, size), anti_aliasing=True), 0, 1).astype(np.float32)


def make_mask(kind: str, shape, seed: int) -> np.ndarray:
    if kind == "random50":
        return masks.random_missing(shape, 0.5, seed=seed)
    s = shape[0]
    return masks.combine(
        masks.rectangles(shape, count=3, min_side=s // 16, max_side=s // 8, seed=seed),
        masks.strokes(shape, count=3, width=max(2, s // 64), seed=seed + 1),
        masks.text_mask(shape, text="NTK", size=s // 8, lines=2, seed=seed + 2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--masks", default="holes,random50")
    ap.add_argument("--methods", default="cntk,biharmonic,dip")
    ap.add_argument("--solver", default="cg")
    ap.add_argument("--epochs", type=int, default=100, help="CG iteration cap (cntk; stops at tol 1e-3 first)")
    ap.add_argument("--dip-iters", type=int, default=500)
    ap.add_argument("--dip-width", type=int, default=32)
    ap.add_argument("--dip-images", type=int, default=2, help="run DIP on the first N images only (slow)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--redo", default="", help="methods whose earlier runs at this size are dropped and rerun")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(out.read_text())["runs"] if out.is_file() else []
    redo = set(args.redo.split(",")) if args.redo else set()
    runs = [r for r in runs if not (r["method"] in redo and r["size"] == args.size)]
    done = {(r["image"], r["mask"], r["method"], r["size"]) for r in runs}
    images = list_images(args.images)
    if not images:
        print(f"no images in {DATA}", file=sys.stderr)
        return 1
    for path in images:
        truth = load_square(path, args.size)
        for mk in args.masks.split(","):
            obs = make_mask(mk, truth.shape, seed=sum(map(ord, path.stem)))
            for method in args.methods.split(","):
                key = (path.name, mk, method, args.size)
                if key in done or (method == "dip" and images.index(path) >= args.dip_images):
                    continue
                kw = {}
                if method == "cntk":
                    kw = dict(levels=args.levels, solver=args.solver, epochs=args.epochs)
                elif method == "dip":
                    kw = dict(levels=args.levels, iterations=args.dip_iters, width=args.dip_width, seed=0)
                res, rep = inpaint_with_report(truth, obs, method=method, truth=truth, progress=False, **kw)
                if images.index(path) < 2:  # keep the completed images of the panel rows
                    PANELS.mkdir(parents=True, exist_ok=True)
                    np.save(PANELS / f"{path.stem}_{mk}_{method}_{args.size}.npy", res)
                rep.update(image=path.name, mask=mk, size=args.size)
                runs.append(to_jsonable(rep))
                print(f"{path.name:<22s} {mk:<9s} {method:<10s} PSNR {rep['psnr']:6.2f}  "
                      f"missing {rep['psnr_missing']:6.2f}  SSIM {rep['ssim']:.3f}  {rep['time_s']:7.2f} s",
                      flush=True)
                meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU", "load_avg_1m": os.getloadavg()[0],
                        "python": platform.python_version()}
                tmp = out.with_suffix(".tmp")
                tmp.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
                tmp.replace(out)
    write_tables(runs, args.size)
    if not args.no_figures:
        write_panels(images, args)
    return 0


def write_tables(runs: list[dict], size: int) -> None:
    """Per-image and average tables → docs/results_inpainting.md (section for this size)."""
    runs = [r for r in runs if r["size"] == size]
    methods = [m for m in ("cntk", "biharmonic", "dip") if any(r["method"] == m for r in runs)]
    cntk_levels = sorted({r["settings"].get("levels") for r in runs if r["method"] == "cntk"})
    lines = [f"## {size}×{size} images (CNTK levels {', '.join(map(str, cntk_levels)) or '–'})", ""]
    for mk in sorted({r["mask"] for r in runs}):
        sub = [r for r in runs if r["mask"] == mk]
        lines += [f"### mask: {mk}", "", "| image | " + " | ".join(
            f"{m} PSNR / SSIM / time" for m in methods) + " |", "|---|" + "---|" * len(methods)]
        for img in sorted({r["image"] for r in sub}):
            cells = []
            for m in methods:
                r = next((r for r in sub if r["image"] == img and r["method"] == m), None)
                cells.append("–" if r is None else f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['time_s']:.1f} s")
            lines.append(f"| {img} | " + " | ".join(cells) + " |")
        avg = []
        for m in methods:
            rr = [r for r in sub if r["method"] == m]
            avg.append(f"**{np.mean([r['psnr'] for r in rr]):.2f} / {np.mean([r['ssim'] for r in rr]):.3f} / "
                       f"{np.mean([r['time_s'] for r in rr]):.1f} s** (n={len(rr)})")
        lines += ["| **average** | " + " | ".join(avg) + " |", ""]
    section = "\n".join(lines)
    path = REPO / "docs" / "results_inpainting.md"
    text = path.read_text() if path.is_file() else ""
    marker_start, marker_end = f"<!-- size {size} start -->", f"<!-- size {size} end -->"
    block = f"{marker_start}\n{section}\n{marker_end}"
    if marker_start in text:
        pre, rest = text.split(marker_start, 1)
        text = pre + block + rest.split(marker_end, 1)[1]
    else:
        text = (text or "# Inpainting results\n\n") + "\n" + block + "\n"
    path.write_text(text)
    print(f"tables -> {path}")


def write_panels(images: list[Path], args) -> None:
    """Panels for the first two images: truth | corrupted | each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = ["cntk", "biharmonic", "dip"]  # every method with a cached result (a run may redo only one)
    for mk in args.masks.split(","):
        rows = images[:2]
        fig, axes = plt.subplots(len(rows), 2 + len(methods), figsize=(2.4 * (2 + len(methods)), 2.5 * len(rows)),
                                 squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for i, path in enumerate(rows):
            truth = load_square(path, args.size)
            obs = make_mask(mk, truth.shape, seed=sum(map(ord, path.stem)))
            panels = [("truth", truth), ("corrupted", io.apply_mask(truth, obs, 1.0))]
            for m in methods:
                cached = PANELS / f"{path.stem}_{mk}_{m}_{args.size}.npy"
                if not cached.is_file():
                    continue
                res = np.load(cached)
                from bigntk.apps.inpaint.metrics import psnr
                panels.append((f"{m} {psnr(truth, res):.2f} dB", res))
            for ax, (title, im) in zip(axes[i], panels):
                ax.imshow(np.clip(im, 0, 1), cmap="gray" if im.ndim == 2 else None, vmin=0, vmax=1)
                ax.set_title(title, fontsize=8)
                ax.axis("off")
        fig.tight_layout()
        dest = REPO / "docs" / "figures" / f"inpainting_panels_{mk}_{args.size}.png"
        fig.savefig(dest, dpi=90)
        plt.close(fig)
        print(f"panels -> {dest}")


if __name__ == "__main__":
    sys.exit(main())
