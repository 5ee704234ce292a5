"""CNTK operators over the observed pixels of an H × W image.

The compact CNTK (``bigntk.kernels.cntk``) is stationary up to a period P = 2^s:

    K[(i, j), (k, l)] = C[i mod P, j mod P, (k − i) mod H, (l − j) mod W].

* :class:`CNTKOperator` serves tiles from any such compact kernel object (in memory or zarr-backed)
  through its ``block(idx, jdx)`` / ``diag()`` methods, restricted to observed pixels.
* :class:`PolyphaseCNTKOperator` uses the *window form* (``bigntk.kernels.cntk.WindowKernel``): with nearest
  upsampling every kernel row equals a constant c_far outside the window |v| ≤ P − 1, and the window
  stores the deviation W[a, b, v] = C[a, b, v] − c_far inside it, so

      (Kα)(u) = Σ_{|v| ≤ P−1} W[u mod P, v] α(u + v)  +  c_far · Σ α.

  Splitting α into its P × P polyphase components, the window sum is a periodic polyphase convolution:
  each P × P output block depends on the 3 × 3 neighbouring input blocks, so the whole product is ONE
  GEMM of a (P², 9P²) matrix with a (9P², H·W/P² · l) stack of shifted blocks — O(9·H·W·P²·l) flops,
  against O((H·W)²) for forming kernel rows. Unobserved pixels are zeros of α; several right-hand sides
  (RGB) ride along as extra GEMM columns. The c_far term is added last in float64 (adding it inside a
  float32 sum would lose the small window values).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .. import backend
from .base import KernelOperator, SubOperator

__all__ = ["CNTKOperator", "PolyphaseCNTKOperator", "PeriodicGrid", "observed_index", "tile_blocks", "periodic_grid"]


def observed_index(mask: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Flat (row-major) indices of observed pixels from an (H, W) bool mask; int arrays pass through."""
    m = backend.to_numpy(mask)
    if m.dtype == bool:
        if m.ndim != 2:
            raise ValueError(f"mask must be (H, W), got shape {m.shape}")
        return np.flatnonzero(m.reshape(-1)).astype(np.int64)
    return m.reshape(-1).astype(np.int64)


@dataclass(frozen=True)
class PeriodicGrid:
    """Where a CNTK operator's points live, and the kernel's periodic structure.

    image_shape : (H, W); period : P (= 2^s), K[u + P e, v + P e] = K[u, v] on the H × W torus;
    pixels : (n,) int64 flat pixel index of each operator point;
    offsets : ``offsets(Q)`` → (Q, Q, H, W) float64 array k̄ with k̄[q_a, q_b, d_a, d_b] = mean over the
        phases a ≡ q (mod Q) of K[(a_a, a_b), (a_a + d_a, a_b + d_b)] (offsets modulo H, W) — the kernel
        averaged over shifts by multiples of Q (exact for Q = P).
    """

    image_shape: tuple[int, int]
    period: int
    pixels: torch.Tensor
    offsets: Callable[[int], torch.Tensor]

    def restrict(self, index: torch.Tensor) -> "PeriodicGrid":
        return PeriodicGrid(self.image_shape, self.period, self.pixels[index.to(self.pixels.device)], self.offsets)


def periodic_grid(op: KernelOperator) -> PeriodicGrid | None:
    """The image grid an operator's points live on (CNTK operators and their restrictions), else None.

    The circulant preconditioner (``bigntk.preconditioners``) needs it.
    """
    if isinstance(op, SubOperator):
        g = periodic_grid(op.parent)
        return None if g is None else g.restrict(op.index)
    if isinstance(op, (CNTKOperator, PolyphaseCNTKOperator)):
        return op.grid()
    local = getattr(op, "local_operator", None)  # a sharded operator: the grid of its source
    return periodic_grid(local()) if callable(local) else None


def _check_period(Q: int, P: int) -> None:
    if Q < 1 or P % Q:
        raise ValueError(f"averaging period Q={Q} must divide the kernel period P={P}")


class CNTKOperator(KernelOperator):
    """CNTK restricted to observed pixels, tiles served by a compact kernel.

    Parameters
    ----------
    compact : object with ``shape`` ((H·W, H·W) or (H, W)), ``block(idx, jdx)`` (flat pixel indices) and
        ``diag()`` — e.g. the result of ``bigntk.kernels.cntk.compact_kernel`` or ``open_kernel``.
    observed : (H, W) bool mask or flat int indices of the observed pixels (None = all pixels).
    """

    def __init__(self, compact: Any, observed: Any = None, *, device=None, dtype=None,
                 memory_budget: int | None = None):
        if device is None and hasattr(compact, "device"):
            device = compact.device
        self.compact = compact
        n_pix = _n_pixels(compact)
        obs = np.arange(n_pix) if observed is None else observed_index(observed)
        super().__init__(len(obs), device=device, dtype=dtype, memory_budget=memory_budget)
        self.pixels = torch.as_tensor(obs, dtype=torch.int64, device=self.device)

    def _block(self, rows, cols):
        r = backend.to_numpy(self.pixels[rows])
        c = backend.to_numpy(self.pixels[cols])
        return backend.to_tensor(self.compact.block(r, c), device=self.device, dtype=self.dtype)

    def diag(self) -> torch.Tensor:
        d = backend.to_tensor(self.compact.diag(), device=self.device, dtype=self.dtype).reshape(-1)
        return d[self.pixels]

    def grid(self) -> PeriodicGrid | None:
        C = getattr(self.compact, "C", None)  # (P, P, H, W), in memory or zarr
        if C is None or len(C.shape) != 4:
            return None
        P = int(C.shape[0])

        def offsets(Q: int) -> torch.Tensor:
            _check_period(Q, P)
            out = torch.zeros(Q, Q, *C.shape[2:], dtype=torch.float64)
            for a in range(P):  # one (P, H, W) phase slab at a time: bounded memory for zarr stores
                slab = torch.as_tensor(np.asarray(C[a]), dtype=torch.float64)
                out[a % Q] += slab.reshape(P // Q, Q, *slab.shape[1:]).sum(0)
            return (out / (P // Q) ** 2).to(self.device)

        return PeriodicGrid(tuple(int(x) for x in C.shape[2:]), P, self.pixels, offsets)

    @classmethod
    def from_store(cls, path: Any, observed: Any = None, *, shape: tuple[int, int] | None = None,
                   **kw) -> "CNTKOperator":
        """From a full-form kernel store (``bigntk.kernels.cntk.open_kernel``), read where this runs:
        a picklable source for sharded operators, so that workers read the store themselves."""
        from ..kernels.cntk import open_kernel

        kernel = open_kernel(path, shape=shape, device=kw.get("device"), memory_budget=kw.get("memory_budget"))
        return cls(kernel, observed, **kw)


def _n_pixels(compact: Any) -> int:
    shape = tuple(compact.shape)
    if len(shape) == 2 and hasattr(compact, "image_shape"):
        h, w = compact.image_shape
        return int(h * w)
    if len(shape) == 2 and shape[0] == shape[1]:
        return int(shape[0])
    raise ValueError(f"cannot infer the number of pixels from shape {shape}")


class PolyphaseCNTKOperator(KernelOperator):
    """Fast CNTK matvec from the window form (see module docstring).

    Parameters
    ----------
    window : array (P, P, 2P − 1, 2P − 1)
        window[a, b, va + P − 1, vb + P − 1] = K[(i, j), (i + va, j + vb)] − c_far for i ≡ a, j ≡ b (mod P)
        (the deviation from c_far: the public ``C_window`` layout of ``bigntk.kernels.cntk``).
    c_far : float
        The constant value of every kernel entry outside the window.
    image_shape : (H, W), both multiples of P and at least 2P (so the window does not wrap).
    observed : (H, W) bool mask or flat pixel indices (None = all).
    """

    fast_matmul = True

    def __init__(self, window: Any, c_far: float, image_shape: tuple[int, int], observed: Any = None, *,
                 device=None, dtype=None, memory_budget: int | None = None):
        dev = backend.resolve_device(device)
        dt = backend.resolve_dtype(dtype)
        Wn = backend.to_tensor(window, device=dev, dtype=torch.float64)
        if Wn.ndim != 4 or Wn.shape[0] != Wn.shape[1] or Wn.shape[2] != 2 * Wn.shape[0] - 1 \
                or Wn.shape[3] != Wn.shape[2]:
            raise ValueError(f"window must have shape (P, P, 2P-1, 2P-1), got {tuple(Wn.shape)}")
        P = int(Wn.shape[0])
        H, W = (int(s) for s in image_shape)
        if H % P or W % P or H < 2 * P or W < 2 * P:
            raise ValueError(f"image shape {(H, W)} must be multiples of P={P} and at least 2P; "
                             "use CNTKOperator with the full compact form instead")
        obs = np.arange(H * W) if observed is None else observed_index(observed)
        super().__init__(len(obs), device=dev, dtype=dt, memory_budget=memory_budget)
        self.P, self.image_shape, self.c_far = P, (H, W), float(c_far)
        self.pixels = torch.as_tensor(obs, dtype=torch.int64, device=dev)
        self.window = Wn
        self._gemm = self._gemm_matrix(Wn).to(dt)  # (P², 9P²)

    def _retype(self) -> None:
        self._gemm = self._gemm_matrix(self.window).to(self.dtype)

    @staticmethod
    def _gemm_matrix(Wd: torch.Tensor) -> torch.Tensor:
        """Place window[a, b, va, vb] at column (a + va + P, b + vb + P) of a 3P × 3P super-block."""
        P = Wd.shape[0]
        a = torch.arange(P, device=Wd.device)
        v = torch.arange(-(P - 1), P, device=Wd.device)
        ta = (a[:, None] + v[None, :] + P)  # (P, 2P-1) target row inside the super-block
        G = torch.zeros(P, P, 3 * P, 3 * P, dtype=Wd.dtype, device=Wd.device)
        ia = a[:, None, None, None].expand(P, P, 2 * P - 1, 2 * P - 1)
        ib = a[None, :, None, None].expand_as(ia)
        ra = ta[:, None, :, None].expand_as(ia)
        rb = ta[None, :, None, :].expand_as(ia)
        G[ia, ib, ra, rb] = Wd
        return G.reshape(P * P, 9 * P * P)

    # -- fast product on the full grid -------------------------------------------------------------
    def grid_matmul(self, A: torch.Tensor, block_rows: tuple[int, int] | None = None) -> torch.Tensor:
        """K_full @ A for A of shape (H, W, l) on the full grid (float64 in and out).

        ``block_rows`` = (b0, b1): only output image rows [b0·P, b1·P) are computed and returned
        ((b1 − b0)·P, W, l): the cost is that band's share of the GEMM (row-sharded products).
        """
        H, W = self.image_shape
        P, l = self.P, A.shape[-1]
        b0, b1 = block_rows or (0, H // P)
        x = A.to(self.dtype).permute(2, 0, 1)  # (l, H, W)
        x = torch.nn.functional.pad(x[None], (P, P, P, P), mode="circular")[0]  # (l, H+2P, W+2P)
        blocks = x[:, b0 * P : (b1 + 2) * P].unfold(1, 3 * P, P).unfold(2, 3 * P, P)  # (l, Hb, Wb, 3P, 3P)
        Hb, Wb = b1 - b0, W // P
        stack = blocks.reshape(l * Hb * Wb, 9 * P * P)
        out = stack @ self._gemm.T  # (l·Hb·Wb, P²)
        out = out.reshape(l, Hb, Wb, P, P).permute(1, 3, 2, 4, 0).reshape(Hb * P, W, l)
        far = self.c_far * A.to(backend.ACCUM_DTYPE).sum(dim=(0, 1))
        self.entries_evaluated += Hb * P * W * H * W * l
        return out.to(backend.ACCUM_DTYPE) + far

    def _matmul(self, r, c, V64):
        H, W = self.image_shape
        grid = torch.zeros(H * W, V64.shape[1], dtype=backend.ACCUM_DTYPE, device=self.device)
        grid[self.pixels[c]] = V64
        pr = self.pixels[r]
        if pr.numel() == 0:
            return torch.zeros(0, V64.shape[1], dtype=backend.ACCUM_DTYPE, device=self.device)
        b0, b1 = int(pr.min()) // W // self.P, int(pr.max()) // W // self.P + 1  # output band of the rows
        out = self.grid_matmul(grid.reshape(H, W, -1), (b0, b1)).reshape(-1, V64.shape[1])
        return out[pr - b0 * self.P * W]

    # -- tiles (for EigenPro batches, Nyström subsamples, tests) ----------------------------------
    def _block(self, rows, cols):
        H, W = self.image_shape
        P = self.P
        pr, pc = self.pixels[rows], self.pixels[cols]
        i, j = pr // W, pr % W
        k, l = pc // W, pc % W
        va = _centred(k[None, :] - i[:, None], H)
        vb = _centred(l[None, :] - j[:, None], W)
        inside = (va.abs() <= P - 1) & (vb.abs() <= P - 1)
        a = (i % P)[:, None].expand_as(va)
        b = (j % P)[:, None].expand_as(va)
        vals = self.window[a, b, (va + P - 1).clamp(0, 2 * P - 2), (vb + P - 1).clamp(0, 2 * P - 2)]
        return (torch.where(inside, vals, torch.zeros_like(vals)) + self.c_far).to(self.dtype)

    def diag(self) -> torch.Tensor:
        H, W = self.image_shape
        P = self.P
        i, j = self.pixels // W, self.pixels % W
        return (self.window[i % P, j % P, P - 1, P - 1] + self.c_far).to(self.dtype)

    def grid(self) -> PeriodicGrid:
        H, W = self.image_shape
        P = self.P

        def offsets(Q: int) -> torch.Tensor:
            _check_period(Q, P)
            dev = self.window.reshape(P // Q, Q, P // Q, Q, 2 * P - 1, 2 * P - 1).mean(dim=(0, 2))
            out = torch.full((Q, Q, H, W), self.c_far, dtype=torch.float64, device=self.device)
            v = torch.arange(-(P - 1), P, device=self.device)
            out[:, :, (v % H)[:, None], (v % W)[None, :]] += dev  # H, W ≥ 2P: no offset wraps twice
            return out

        return PeriodicGrid((H, W), P, self.pixels, offsets)

    @classmethod
    def from_kernel(cls, kernel: Any, observed: Any = None, **kw) -> "PolyphaseCNTKOperator":
        """From a ``bigntk.kernels.cntk.WindowKernel`` (``C_window``, ``c_far``, ``image_shape``)."""
        return cls(kernel.C_window, kernel.c_far, kernel.image_shape, observed, **kw)

    @classmethod
    def from_store(cls, path: Any, observed: Any = None, *, shape: tuple[int, int] | None = None,
                   **kw) -> "PolyphaseCNTKOperator":
        """From a window-form kernel store (``bigntk.kernels.cntk.open_kernel``), read where this runs:
        a picklable source for sharded operators, so that workers read the store themselves."""
        from ..kernels.cntk import open_kernel

        return cls.from_kernel(open_kernel(path, shape=shape, device=kw.get("device")), observed, **kw)


def tile_blocks(pixels: Any, image_shape: tuple[int, int], tile: int) -> list[np.ndarray]:
    """Partition observed points into square spatial tiles (block-Jacobi blocks for CG).

    pixels : (n,) flat pixel indices of the operator's points (``op.pixels``); tile : side in pixels.
    Returns a list of index arrays into 0..n−1 (empty tiles dropped).
    """
    pix = np.asarray(backend.to_numpy(pixels) if torch.is_tensor(pixels) else pixels, dtype=np.int64)
    H, W = (int(s) for s in image_shape)
    nt_w = -(-W // tile)
    t = (pix // W) // tile * nt_w + (pix % W) // tile
    order = np.argsort(t, kind="stable")
    cuts = np.flatnonzero(np.diff(t[order])) + 1
    return [b for b in np.split(order, cuts) if len(b)]


def _centred(d: torch.Tensor, m: int) -> torch.Tensor:
    """Offsets modulo m mapped into [-m/2, m/2)."""
    return (d + m // 2) % m - m // 2
