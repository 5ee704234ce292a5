"""``demo_inpainting(out_dir)``: CNTK vs biharmonic on scikit-image's astronaut with a large hole.

Called by ``bigntk demo``. The astronaut (512² RGB, bundled with scikit-image, no download) is
downscaled to ``size``² so that the whole demo runs in well under a minute on 2 CPU cores; a
square hole plus a few seeded scratches are removed; both methods fill them; PSNR is printed and a
figure (truth | corrupted | CNTK | biharmonic) plus a JSON summary are written to ``out_dir``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .io import apply_mask, save_image
from .masks import center_hole, strokes
from .pipeline import inpaint_with_report
from .report import to_jsonable

__all__ = ["demo_inpainting", "astronaut"]


def astronaut(size: int = 128) -> np.ndarray:
    """scikit-image's astronaut, float32 RGB in [0, 1], resized (anti-aliased) to size × size."""
    from skimage import data
    from skimage.transform import resize

    img = data.astronaut().astype(np.float32) / 255.0
    return np.clip(resize(img, (size, size), anti_aliasing=True), 0, 1).astype(np.float32)


def demo_inpainting(out_dir: str | Path, *, size: int = 128, hole: int = 20, levels: int = 5,
                    solver: str = "cg", epochs: int = 100, device=None, progress: bool = True, verbose: bool = True) -> dict:
    """Run the demo; returns ``{"cntk": report, "biharmonic": report, "figure": path}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = astronaut(size)
    obs = center_hole(truth.shape, hole)
    # move the hole onto the face/helmet region and add thin scratches
    obs = np.roll(obs, (-size // 4, -size // 16), axis=(0, 1))
    obs &= strokes(truth.shape, count=3, width=max(2, size // 64), seed=0)
    results = {}
    images = {}
    for method in ("cntk", "biharmonic"):
        kw = dict(levels=levels, solver=solver, epochs=epochs, device=device) if method == "cntk" else {}
        out, rep = inpaint_with_report(truth, obs, method=method, truth=truth, progress=progress, **kw)
        results[method], images[method] = rep, out
        save_image(out_dir / f"astronaut_{method}.png", out)
        if verbose:
            print(f"inpainting demo  {method:<10s} PSNR {rep['psnr']:.2f} dB  (missing pixels "
                  f"{rep['psnr_missing']:.2f} dB)  SSIM {rep['ssim']:.3f}  {rep['time_s']:.1f} s")
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    panels = [("truth", truth), ("corrupted", apply_mask(truth, obs, fill=1.0)),
              (f"CNTK {results['cntk']['psnr']:.2f} dB", images["cntk"]),
              (f"biharmonic {results['biharmonic']['psnr']:.2f} dB", images["biharmonic"])]
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(np.clip(im, 0, 1))
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig_path = out_dir / "inpainting_demo.png"
    fig.savefig(fig_path, dpi=100)
    plt.close(fig)
    summary = {"cntk": results["cntk"], "biharmonic": results["biharmonic"], "figure": str(fig_path)}
    (out_dir / "inpainting_demo.json").write_text(json.dumps(to_jsonable(summary), indent=2))
    if verbose:
        print(f"inpainting demo figure: {fig_path}")
    return summary
