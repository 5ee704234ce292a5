"""Baseline: a finite-width Deep-Image-Prior network trained with Adam (the paper's comparison).

The network is the finite form of the CNTK's architecture — one definition,
``bigntk.kernels.cntk.dip(levels, ...)`` (or any ``arch``), turned into torch modules by
``Serial.network`` — followed by a sigmoid output:
[Conv(q)–act–Down]×s, Conv(q)–act, [Up–Conv(q)–act]×(s−1), Up–Conv(q), sigmoid.
Convs use circular padding; Down keeps even coordinates (stride 2); Up is nearest or bilinear.
Input: fixed noise with ``in_channels`` i.i.d. U[0, 0.1] channels (the stationary prior of the
CNTK). Loss: mean squared error on observed pixels. Everything is seeded.

He-initialised convolutions and Adam with lr 1e-3: without batch normalisation (the CNTK's
architecture has none) the original DIP's lr 0.01 drove the sigmoid into saturation within a few
steps, after which the loss never moved (128² Cameraman, hole mask: loss 0.053 → 0.053 in 1000 steps;
with these settings 0.053 → 0.002 in 500 steps, 28.5 dB).
"""
from __future__ import annotations

import numpy as np
import torch

from ....backend import resolve_device, to_numpy
from ....kernels.cntk import Serial, dip
from ....progress import bar as progress_bar

__all__ = ["fill"]


def fill(image: np.ndarray, observed: np.ndarray, *, levels: int = 6, arch: Serial | None = None, width: int = 64,
         iterations: int = 1000, lr: float = 1e-3, in_channels: int = 32, filter: int = 3,
         upsample: str = "nearest", seed: int = 0, device=None, progress: bool = True) -> tuple[np.ndarray, dict]:
    """Train a DIP net on the observed pixels of ``image`` (H, W, C), H and W divisible by 2**levels.

    ``arch``: the architecture (default ``dip(levels, filter=filter, upsample=upsample)``), the same
    object the cntk method takes.
    """
    H, W, C = image.shape
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        raise ValueError(f"iterations (CLI: --epochs) must be an integer >= 1, got {iterations!r}")
    arch = arch if arch is not None else dip(levels, filter=filter, upsample=upsample)
    step = 2 ** arch.n_down
    if H % step or W % step:
        raise ValueError(f"image shape {(H, W)} must be divisible by 2**levels = {step}")
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    net = arch.network(width, in_channels, C, output="sigmoid").to(dev)
    z = (torch.rand(1, in_channels, H, W, generator=gen) * 0.1).to(dev)
    y = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(dev)
    m = torch.as_tensor(observed, dtype=torch.float32)[None, None].to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    bar = progress_bar(iterations, iterable=range(iterations), desc="dip", unit="step", progress=progress, leave=False)
    for _ in bar:
        opt.zero_grad(set_to_none=True)
        loss = ((net(z) - y) ** 2 * m).sum() / (m.sum() * C)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if len(losses) % 50 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.2e}")
    with torch.no_grad():
        out = to_numpy(net(z)[0]).transpose(1, 2, 0)
    return out.astype(np.float32), {"iterations": iterations, "final_loss": losses[-1] if losses else None,
                                    "first_loss": losses[0] if losses else None, "width": width}
