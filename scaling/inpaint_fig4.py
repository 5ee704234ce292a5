"""Paper Fig. 4: CNTK kernel rows (heat maps) for the stationary (uniform), meshgrid and identity priors
at 2, 4 and 6 levels, via ``bigntk.viz.kernel_heatmap``: stationary and identity from the exact compact
kernel on a 128 × 128 image (6 levels need more than 64 pixels, else the bottleneck is one pixel and
the row is constant); meshgrid from the dense kernel on 64 × 64 (dense 128² would need ~4 GiB).

    python scaling/inpaint_fig4.py   →  docs/figures/inpainting_fig4_heatmaps.png
"""
from __future__ import annotations

import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(size: int = 128, pixel=(40, 80)) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bigntk.kernels.cntk import compact_kernel, dense_kernel, dip
    from bigntk.viz import kernel_heatmap

    priors = ("stationary", "meshgrid", "identity")
    levels = (2, 4, 6)
    fig, axes = plt.subplots(len(priors), len(levels), figsize=(3.2 * len(levels), 3.0 * len(priors)))
    for r, prior in enumerate(priors):
        for c, s in enumerate(levels):
            t0 = time.perf_counter()
            if prior == "meshgrid":
                n, px = size // 2, (pixel[0] // 2, pixel[1] // 2)
                K = dense_kernel(dip(s), (n, n), prior=prior)
            else:
                n, px = size, pixel
                K = compact_kernel(dip(s), (size, size), prior=prior)
            # axis labels (row k, column l) and a labelled colour bar come from kernel_heatmap
            kernel_heatmap(K, px, image_shape=(n, n) if prior == "meshgrid" else None, ax=axes[r, c],
                           title=f"{prior}, {s} levels ({n}x{n})")
            axes[r, c].title.set_fontsize(9)
            print(f"{prior:<10s} levels {s}: {time.perf_counter() - t0:.1f} s", flush=True)
            del K
    fig.suptitle("CNTK kernel row of the marked pixel (paper Fig. 4)")
    fig.tight_layout()
    dest = REPO / "docs" / "figures" / "inpainting_fig4_heatmaps.png"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=90)
    print(f"-> {dest}")
    return dest


if __name__ == "__main__":
    main()
