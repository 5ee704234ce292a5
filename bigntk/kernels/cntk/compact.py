"""Exact compact CNTK (phase × offset form), its far-field window form, and the kernel objects.

See the package docstring (``bigntk.kernels.cntk``) for the public array layouts.
"""
from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from ... import backend
from ...backend import ACCUM_DTYPE, resolve_device, resolve_dtype
from ...priors.images import stationary_values
from .layers import Conv, LeakyReLU, Serial, Up, check_shape

__all__ = [
    "CompactKernel",
    "WindowKernel",
    "FORMS",
    "check_compact",
    "block_rows_for",
    "stream_block_rows",
    "stream_blocks",
    "compact_arrays",
    "window_arrays",
    "window_condition",
    "null_space_dim",
    "null_space_basis",
]

FORMS = ("auto", "window", "full")


# ------------------------------------------------------------------------------------ validation
def check_compact(arch: Serial, shape, prior) -> Tuple[Tuple[int, int], Tuple[float, float]]:
    if not isinstance(arch, Serial):
        raise TypeError(f"arch must be a Serial architecture (e.g. dip(3)), got {type(arch).__name__}")
    shape = check_shape(shape)
    out = arch.output_shape(shape)
    if out != shape:
        raise ValueError(f"the compact kernel needs an architecture whose output shape equals its input "
                         f"shape; {shape} -> {out}")
    if not arch.periodic:
        raise ValueError(
            f"upsample mode(s) {arch.upsample_modes} include 'bilinear_aligned', which is not periodic: "
            "the compact kernel needs 'nearest' or 'bilinear' (use dense_kernel for 'bilinear_aligned')"
        )
    vals = stationary_values(prior)
    if vals is None:
        raise ValueError(
            f"the compact kernel needs a stationary prior ('stationary', 'identity' or (diag, off)), got "
            f"{prior!r}; use dense_kernel for meshgrid / explicit priors"
        )
    P = arch.output_period()
    if P[0] != P[1] or shape[0] % P[0] or shape[1] % P[1]:
        raise ValueError(f"H and W must be divisible by the output period {P}, got {shape}")
    return shape, vals


def window_condition(arch: Serial, shape, prior: Any = "stationary") -> bool:
    """True when the far-field window form is exact for this (arch, shape, prior).

    Holds for nearest upsampling only (every Up 'nearest'), a δ-structured stationary prior, and
    H, W ≥ 2P with P = 2^(number of Up layers): then each output row equals c_far outside the box
    |v| ≤ P − 1 (per axis) and the box values do not depend on (H, W).
    """
    try:
        shape, _ = check_compact(arch, shape, prior)
    except ValueError:
        return False
    P = arch.output_period()[0]
    return arch.upsample_modes in ((), ("nearest",)) and arch.n_up >= 1 and min(shape) >= 2 * P


# ---------------------------------------------------------------------------------- computation
def _initial_state(shape, vals, device, dtype) -> torch.Tensor:
    H, W = shape
    diag, off = vals
    S = torch.full((1, H, 1, W), off, device=device, dtype=dtype)
    S[0, 0, 0, 0] = diag
    return S


def _run(layers: Sequence, S, T, period, final: int, start: int = 0):
    """Apply layers to the compact state; Up followed by Conv runs as one fused gather."""
    k, layers = 0, list(layers)
    while k < len(layers):
        layer = layers[k]
        nxt = layers[k + 1] if k + 1 < len(layers) else None
        if isinstance(layer, Up) and isinstance(nxt, Conv):
            S, T, period = layer.compact_fused(S, T, period, nxt, last=(start + k + 1 == final))
            k += 2
            continue
        S, T, period = layer.compact(S, T, period, last=(start + k == final))
        k += 1
    return S, T, period


def _to_public(X: torch.Tensor) -> torch.Tensor:
    """Internal (Py, H, Px, W) → public (Py, Px, H, W)."""
    return X.permute(0, 2, 1, 3).contiguous()


def compact_arrays(arch: Serial, shape, prior: Any = "stationary", *, device=None, dtype=None) -> torch.Tensor:
    """Full compact form C, shape (P, P, H, W), computed in memory (see package docstring)."""
    shape, vals = check_compact(arch, shape, prior)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    return _to_public(_compact_internal(arch, shape, vals, dev, dt))


def _compact_internal(arch: Serial, shape, vals, dev, dt) -> torch.Tensor:
    """Full compact form in the internal layout (P, H, P, W)."""
    S = _initial_state(shape, vals, dev, dt)
    _, T, _ = _run(arch.layers, S, None, (1, 1), arch.final_conv_index())
    return T


def _pretail(arch: Serial, shape, vals, dev, dt):
    ts = arch.tail_start()
    S = _initial_state(shape, vals, dev, dt)
    S, T, period = _run(arch.layers[:ts], S, None, (1, 1), -1)
    return S, T, period


def _streamable(arch: Serial) -> bool:
    """The tail (last Up onwards) can be streamed over y-phases when its activations see a constant
    diagonal: always with nearest upsampling, and trivially when the tail has no activation."""
    tail = arch.layers[arch.tail_start():]
    return arch.upsample_modes == ("nearest",) or not any(isinstance(l, LeakyReLU) for l in tail)


def _conv_valid_rows(X: torch.Tensor, r: int, q: int) -> torch.Tensor:
    """Window average along dim 0 over a contiguous run of phases, dropping r rows at each end."""
    n = X.shape[0] - 2 * r
    out = X[r:r + n].clone()
    for d in range(1, r + 1):
        out.add_(X[r - d:r - d + n]).add_(X[r + d:r + d + n])
    return out.mul_(1.0 / q)


def _tail_block(arch: Serial, S, T, period, y0: int, y1: int, st_sum=None) -> torch.Tensor:
    """Output phase rows [y0, y1) of the compact kernel, public layout (y1−y0, P, H, W)."""
    ts, final = arch.tail_start(), arch.final_conv_index()
    tail = arch.layers[ts:]
    fuse = len(tail) > 1 and isinstance(tail[1], Conv)
    R = sum(l.radius for l in tail[1 + fuse:] if isinstance(l, Conv))  # radius still to consume
    P_out = 2 * period[0]
    phases = (np.arange(y0 - R, y1 + R)) % P_out
    S, T, period = tail[0].compact_fused(S, T, period, tail[1] if fuse else None,
                                         last=fuse and ts + 1 == final, phases_y=phases,
                                         st_sum=st_sum if fuse else None)
    for k, layer in enumerate(tail[1 + fuse:], start=ts + 1 + fuse):
        last = k == final
        if isinstance(layer, Conv):
            r, q = layer.radius, layer.filter
            avg = lambda X: layer._avg_phase(_conv_valid_rows(X, r, q), 2)
            T_new = avg(S if T is None else S + T)
            S = None if last else avg(S)
            T = T_new
        elif isinstance(layer, LeakyReLU):
            # nearest upsampling keeps the diagonal one constant (exactly, up to transcendental
            # round-off): activate with that scalar; anything else is a bug, not round-off
            d = S[:, 0, :, 0]
            d0 = d.mean()
            if float((d - d0).abs().max()) > 1e-5 * float(d0.abs()):
                raise RuntimeError("streamed tail met a non-constant diagonal; build in memory instead")
            from .layers import _activate_block

            _activate_block(S, T, d0.abs(), layer.negative_slope)
        else:  # pragma: no cover - tails hold Up, Conv and activations only
            raise RuntimeError(f"unexpected layer {layer!r} after the last Up")
    return _to_public(T)


def _expand_block(window: torch.Tensor, c_far: float, y0: int, y1: int, shape, dt) -> torch.Tensor:
    """Phase rows [y0, y1) of the full compact form from the window form (public layout)."""
    H, W = shape
    P = window.shape[0]
    out = torch.full((y1 - y0, P, H, W), c_far, device=window.device, dtype=dt)
    d = torch.arange(-(P - 1), P, device=window.device)
    out[:, :, (d % H)[:, None], (d % W)[None]] = (window[y0:y1] + c_far).to(dt)
    return out


def block_rows_for(P: int, H: int, W: int, R: int, itemsize: int, budget: int) -> int:
    """Largest divisor b of P whose streamed block (b + 2R phase rows, ~4 live arrays) fits ``budget`` bytes."""
    for b in sorted((d for d in range(1, P + 1) if P % d == 0), reverse=True):
        if 4 * (b + 2 * R) * P * H * W * itemsize <= budget:
            return b
    return 1


def stream_block_rows(arch: Serial, shape, dtype: torch.dtype, budget: int) -> int:
    """Phase rows per streamed block of the full compact form of ``arch`` at ``shape`` within ``budget`` bytes."""
    if not arch.n_up:
        return arch.output_period()[0]
    H, W = shape
    R = sum(l.radius for l in arch.layers[arch.tail_start():] if isinstance(l, Conv))  # rows the tail consumes
    return block_rows_for(arch.output_period()[0], H, W, R, torch.finfo(dtype).bits // 8, budget)


def stream_blocks(
    arch: Serial,
    shape,
    prior: Any = "stationary",
    *,
    device=None,
    dtype=None,
    block_rows: Optional[int] = None,
    memory_budget: int | str | None = None,
    skip: Callable[[int], bool] = lambda y0: False,
    sink: Optional[Callable[[int, torch.Tensor], Any]] = None,
    workers: int = 1,
    progress: bool = True,
    method: str = "auto",
) -> list:
    """Build the full compact form block by block over output y-phase rows (Dask threads).

    Each block (b, P, H, W) is handed to ``sink(y0, block)``; blocks for which ``skip(y0)`` is True
    (already stored) are not computed. Peak memory ≈ pre-tail state + ``workers`` blocks; the block
    size b comes from ``memory_budget`` (bytes or a size string; :func:`bigntk.backend.memory_budget`).
    method : "stream" runs the layer recursion on each block; "window" expands the far-field window
        form (c_far everywhere, the window around offset 0); "auto" = window where it holds.
    Returns the list of sink results in block order.
    """
    if method not in ("auto", "stream", "window"):
        raise ValueError(f"method must be 'auto', 'stream' or 'window', got {method!r}")
    shape, vals = check_compact(arch, shape, prior)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    use_window = window_condition(arch, shape, prior) if method == "auto" else method == "window"
    if use_window and not window_condition(arch, shape, prior):
        raise ValueError("method='window' needs the window form to hold (see window_condition)")
    if arch.n_up == 0 or not (_streamable(arch) or use_window):
        C = compact_arrays(arch, shape, prior, device=dev, dtype=dt)
        return [sink(0, C)] if not skip(0) else []
    P = arch.output_period()[0]
    b = block_rows or stream_block_rows(arch, shape, dt, backend.memory_budget(dev, memory_budget))
    if P % b:
        raise ValueError(f"block_rows must divide the period {P}, got {b}")
    starts = [y0 for y0 in range(0, P, b) if not skip(y0)]
    make = _block_maker(arch, shape, prior, vals, dev, dt, b, use_window)
    desc = f"CNTK {shape[0]}x{shape[1]} P={P}"
    return _run_blocks(make, sink, starts, workers, desc=desc, progress=progress)


def _block_maker(arch: Serial, shape, prior, vals, dev, dt, b: int, use_window: bool) -> Callable[[int], torch.Tensor]:
    """y0 -> phase rows [y0, y0 + b) of the full compact form (public layout)."""
    if use_window:
        window, c_far, _ = window_arrays(arch, prior, device=dev, dtype=dt)
        return lambda y0: _expand_block(window, c_far, y0, y0 + b, shape, dt)
    S, T, period = _pretail(arch, shape, vals, dev, dt)
    st_sum = S if T is None else S + T  # shared by every block
    return lambda y0: _tail_block(arch, S, T, period, y0, y0 + b, st_sum)


def _run_blocks(make: Callable[[int], torch.Tensor], sink: Callable, starts: Sequence[int], workers: int,
                desc: str, progress: bool) -> list:
    """sink(y0, make(y0)) for every start, on ``workers`` Dask threads, with a progress bar."""
    import dask
    from ...progress import bar as progress_bar

    bar = progress_bar(len(starts), desc=desc, unit="block", progress=progress)
    lock = threading.Lock()

    def task(y0):
        out = sink(y0, make(y0))
        with lock:
            bar.update(1)
        return out

    try:
        if workers <= 1:
            return [task(y0) for y0 in starts]
        return list(dask.compute(*[dask.delayed(task)(y0) for y0 in starts], scheduler="threads",
                                 num_workers=workers))
    finally:
        bar.close()


@lru_cache(maxsize=4)
def _window_cached(spec_key: str, device: str, dtype: str) -> Tuple[torch.Tensor, float]:
    import json

    spec = json.loads(spec_key)
    arch = Serial.from_spec(spec["arch"])
    vals = tuple(spec["prior"])
    return _window_compute(arch, vals, torch.device(device), getattr(torch, dtype))


def _window_compute(arch: Serial, vals, dev, dt) -> Tuple[torch.Tensor, float]:
    P = arch.output_period()[0]
    base = (2 * P, 2 * P)
    C = _compact_internal(arch, base, vals, dev, dt)  # internal (P, 2P, P, 2P)
    c_far = float(C[0, P, 0, P])
    far = torch.cat([C[:, P].reshape(-1), C[:, :, :, P].reshape(-1)])
    tol = 1e-12 if dt == torch.float64 else 1e-5
    if not torch.allclose(far, torch.full_like(far, c_far), rtol=tol, atol=0):
        raise RuntimeError("far field is not constant: the window form does not hold for this network")
    # offsets −(P−1)…P−1 are stored at P+1…2P−1, 0…P−1 (slices, not a slow inner-dim gather)
    C = torch.cat([C[:, P + 1:], C[:, :P]], dim=1)
    C = torch.cat([C[..., P + 1:], C[..., :P]], dim=3).sub_(c_far)  # (P, 2P-1, P, 2P-1)
    return _to_public(C), c_far


def window_arrays(arch: Serial, prior: Any = "stationary", *, device=None, dtype=None) -> Tuple[torch.Tensor, float, int]:
    """(C_window (P, P, 2P−1, 2P−1), c_far, P) of the window form (computed once per dtype at 2P×2P
    and cached per process); raises ValueError where the window form does not hold.

    float32: the far field is one value up to round-off (checked to 1e-5 relative; exact in float64).
    """
    import json

    P = arch.output_period()[0]
    if not window_condition(arch, (2 * P, 2 * P), prior):
        raise ValueError("the window form needs nearest upsampling (at least one Up) and a stationary prior")
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    key = json.dumps({"arch": arch.spec(), "prior": list(stationary_values(prior))})
    window, c_far = _window_cached(key, str(dev), str(dt).replace("torch.", ""))
    return window, c_far, P


# -------------------------------------------------------------------------------- kernel objects
def _as_index(idx: Any, n: int, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx, device=device)
    t = t.reshape(-1).long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        raise IndexError(f"pixel indices must lie in [0, {n}), got range [{int(t.min())}, {int(t.max())}]")
    return t


class _KernelBase:
    """Shared API: K is (H·W, H·W), rows/cols = row-major pixels p = i·W + j."""

    image_shape: Tuple[int, int]
    period: int
    arch: Serial
    prior: Any
    dtype: torch.dtype
    device: torch.device

    @property
    def shape(self) -> Tuple[int, int]:
        n = self.image_shape[0] * self.image_shape[1]
        return n, n

    def _split(self, idx):
        W = self.image_shape[1]
        t = _as_index(idx, self.shape[0], self.device)
        return t // W, t % W

    @property
    def null_space_dim(self) -> Optional[int]:
        """Dimension of null(K) when known in closed form (see :func:`null_space_dim`)."""
        return null_space_dim(self.arch, self.image_shape)

    def to_dense(self) -> torch.Tensor:
        """Whole (H·W, H·W) matrix — small images only."""
        return self.rows(torch.arange(self.shape[0]))

    def __repr__(self) -> str:
        H, W = self.image_shape
        return f"{type(self).__name__}({H}x{W}, P={self.period}, dtype={self.dtype}, arch={self.arch!r})"


class CompactKernel(_KernelBase):
    """Full compact form: C (P, P, H, W), in memory (torch) or lazily on a zarr array.

    K[(i, j), (k, l)] = C[i mod P, j mod P, (k − i) mod H, (l − j) mod W].
    """

    def __init__(self, C: Any, image_shape, arch: Serial, prior: Any = "stationary", *, device=None,
                 dtype=None, meta: Optional[dict] = None, memory_budget: int | str | None = None) -> None:
        self.C = C
        self.image_shape = check_shape(image_shape)
        self.period = int(C.shape[0])
        self.arch, self.prior, self.meta = arch, prior, dict(meta or {})
        self.device = resolve_device(device) if not isinstance(C, torch.Tensor) else C.device
        self.dtype = C.dtype if isinstance(C, torch.Tensor) else resolve_dtype(dtype or str(C.dtype))
        if tuple(C.shape) != (self.period, self.period) + self.image_shape:
            raise ValueError(f"compact array must have shape (P, P, H, W), got {tuple(C.shape)}")
        self._cache: dict = {}  # stored chunks read so far, at most a quarter of the memory budget
        self._cache_bytes = backend.memory_budget(self.device, memory_budget) // 4

    @property
    def in_memory(self) -> bool:
        return isinstance(self.C, torch.Tensor)

    @property
    def c_far(self) -> Optional[float]:
        """The far-field constant where the window form holds (see package docstring), else None."""
        if not window_condition(self.arch, self.image_shape, self.prior):
            return None
        H, W = self.image_shape
        return float(np.asarray(self.C[0, 0, H // 2, W // 2]) if not self.in_memory else self.C[0, 0, H // 2, W // 2])

    def _slabs(self, ay: torch.Tensor, ax: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(unique phase slabs (u, H, W), inverse index) — loads only the phases needed."""
        P = self.period
        code = ay * P + ax
        uniq, inv = torch.unique(code, return_inverse=True)
        if self.in_memory:
            return self.C.reshape(P * P, *self.image_shape)[uniq], inv
        slabs = []
        g = int(getattr(self.C, "chunks", (1, 1))[1])  # phases per stored chunk: read whole chunks
        for c in uniq.tolist():
            ay, ax = c // P, c % P
            key = (ay, ax - ax % g)
            if key not in self._cache:
                chunk = torch.from_numpy(np.asarray(self.C[ay, key[1]:key[1] + g]))
                if sum(t.numel() * t.element_size() for t in self._cache.values()) > self._cache_bytes:
                    self._cache.clear()
                self._cache[key] = chunk
            slabs.append(self._cache[key][ax - key[1]])
        return torch.stack(slabs).to(device=self.device, dtype=self.dtype), inv

    def rows(self, idx) -> torch.Tensor:
        """K[idx, :], shape (len(idx), H·W)."""
        H, W = self.image_shape
        i, j = self._split(idx)
        P = self.period
        slabs, inv = self._slabs(i % P, j % P)
        ry = (torch.arange(H, device=self.device)[None] - i[:, None]) % H  # (n, H)
        rx = (torch.arange(W, device=self.device)[None] - j[:, None]) % W  # (n, W)
        out = slabs[inv[:, None, None], ry[:, :, None], rx[:, None, :]]
        return out.reshape(len(i), H * W)

    def block(self, idx, jdx) -> torch.Tensor:
        """K[idx][:, jdx], shape (len(idx), len(jdx))."""
        H, W = self.image_shape
        i, j = self._split(idx)
        k, l = self._split(jdx)
        P = self.period
        slabs, inv = self._slabs(i % P, j % P)
        dy = (k[None] - i[:, None]) % H
        dx = (l[None] - j[:, None]) % W
        return slabs[inv[:, None], dy, dx]

    def diag(self) -> torch.Tensor:
        """K's diagonal, shape (H·W,)."""
        H, W = self.image_shape
        P = self.period
        if self.in_memory:
            d = self.C[:, :, 0, 0]
        else:
            d = torch.as_tensor(np.asarray(self.C[:, :, 0, 0]), device=self.device, dtype=self.dtype)
        return d.repeat(H // P, W // P).reshape(-1)

    def row_sums(self) -> torch.Tensor:
        """K·1 per phase, shape (P, P) (float64)."""
        if self.in_memory:
            return self.C.to(ACCUM_DTYPE).sum((2, 3))
        P = self.period
        return torch.tensor([[float(np.asarray(self.C[a, b], dtype=np.float64).sum()) for b in range(P)]
                             for a in range(P)], dtype=ACCUM_DTYPE)


class WindowKernel(_KernelBase):
    """Far-field window form: K = c_far·11ᵀ + (C_window placed around each pixel, periodic).

    C_window : (P, P, 2P−1, 2P−1) deviation from c_far (see package docstring); c_far : float.
    Valid for any H, W ≥ 2P divisible by P (the arrays do not depend on H, W).
    """

    _LUT_MAX = 4096  # image sides up to this use (n, n) lookup tables in block()

    def __init__(self, C_window: torch.Tensor, c_far: float, image_shape, arch: Serial,
                 prior: Any = "stationary", meta: Optional[dict] = None) -> None:
        self.C_window = C_window
        self.c_far = float(c_far)
        self.period = P = int(C_window.shape[0])
        if tuple(C_window.shape) != (P, P, 2 * P - 1, 2 * P - 1):
            raise ValueError(f"C_window must have shape (P, P, 2P-1, 2P-1), got {tuple(C_window.shape)}")
        self.image_shape = check_shape(image_shape)
        H, W = self.image_shape
        if H < 2 * P or W < 2 * P or H % P or W % P:
            raise ValueError(f"the window form needs H, W >= 2P = {2 * P} and divisible by P, got {H}x{W}")
        self.arch, self.prior, self.meta = arch, prior, dict(meta or {})
        self.device, self.dtype = C_window.device, C_window.dtype
        self._luts: dict = {}  # lookup tables for block(); small (H², W² int32)

    def at(self, image_shape) -> "WindowKernel":
        """The same kernel for another image size (no recomputation)."""
        return WindowKernel(self.C_window, self.c_far, image_shape, self.arch, self.prior, self.meta)

    def rows(self, idx) -> torch.Tensor:
        H, W = self.image_shape
        P = self.period
        i, j = self._split(idx)
        n = len(i)
        out = torch.zeros(n, H, W, device=self.device, dtype=self.dtype)
        d = torch.arange(-(P - 1), P, device=self.device)
        ry = (i[:, None] + d[None]) % H  # (n, 2P-1)
        rx = (j[:, None] + d[None]) % W
        rows_n = torch.arange(n, device=self.device)[:, None, None]
        out[rows_n, ry[:, :, None], rx[:, None, :]] = self.C_window[i % P, j % P]
        return out.reshape(n, H * W).add_(self.c_far)  # c_far last

    def _lookup(self, n: int) -> torch.Tensor:
        """(n, n) int32 table: window slot of offset (k − i) mod n, or 2P − 1 (a zero slot) outside."""
        key = ("lut", n)
        if key not in self._luts:
            P = self.period
            d = torch.arange(n, device=self.device, dtype=torch.int32)
            c = (d[None] - d[:, None]) % n
            c = torch.where(c > n // 2, c - n, c)
            self._luts[key] = torch.where(c.abs() < P, c + P - 1, torch.full_like(c, 2 * P - 1))
        return self._luts[key]

    def _slots(self, a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
        if n <= self._LUT_MAX:  # table gather (≤ 64 MiB table)
            return self._lookup(n)[a.long()][:, b.long()]
        P = self.period
        c = (b[None] - a[:, None]) % n
        c = torch.where(c > n // 2, c - n, c)
        return torch.where(c.abs() < P, c + P - 1, torch.full_like(c, 2 * P - 1))

    def _padded(self) -> torch.Tensor:
        """Window padded to (P, P, 2P, 2P) with a zero last row/column, flattened."""
        if "padded" not in self._luts:
            P = self.period
            padded = torch.zeros(P, P, 2 * P, 2 * P, device=self.device, dtype=self.dtype)
            padded[:, :, :-1, :-1] = self.C_window
            self._luts["padded"] = padded.reshape(-1)
        return self._luts["padded"]

    def block(self, idx, jdx) -> torch.Tensor:
        """K[idx][:, jdx], shape (len(idx), len(jdx)) — two table gathers and one take."""
        H, W = self.image_shape
        P = self.period
        i, j = (t.int() for t in self._split(idx))
        k, l = (t.int() for t in self._split(jdx))
        ty = self._slots(i, k, H)  # (n, m) window row slots
        tx = self._slots(j, l, W)
        base = ((i % P) * P + (j % P)) * (4 * P * P)  # phase offset into the padded window
        lin = ty.mul_(2 * P).add_(tx).add_(base[:, None])
        return torch.take(self._padded(), lin.long()).add_(self.c_far)

    def diag(self) -> torch.Tensor:
        H, W = self.image_shape
        P = self.period
        d = self.C_window[:, :, P - 1, P - 1] + self.c_far
        return d.repeat(H // P, W // P).reshape(-1)

    def row_sums(self) -> torch.Tensor:
        """K·1 per phase (P, P) = Σ window deviation + c_far·H·W (float64)."""
        H, W = self.image_shape
        return self.C_window.to(ACCUM_DTYPE).sum((2, 3)) + self.c_far * H * W

    def to_compact(self) -> torch.Tensor:
        """Full compact array (P, P, H, W) for this image size."""
        H, W = self.image_shape
        P = self.period
        C = torch.zeros(P, P, H, W, device=self.device, dtype=self.dtype)
        d = torch.arange(-(P - 1), P, device=self.device)
        C[:, :, (d % H)[:, None], (d % W)[None]] = self.C_window
        return C.add_(self.c_far)


# ---------------------------------------------------------------------------------- null space
def null_space_dim(arch: Serial, shape) -> Optional[int]:
    """dim null(K) in closed form where known, else None.

    When the network ends with Up('nearest') → Conv(q): K = W_q[U X Uᵀ] with X the (positive
    definite) NTK + NNGP before the Up, so K f = 0 ⇔ every shift (δ in the q×q window) of f has zero
    2×2 block sums. For q ≥ 3 both alignments occur on each axis: f = (−1)^(i+j)(a_i + b_j), of
    dimension H + W − 1. For q = 1 only aligned blocks: 3·H·W/4.
    """
    layers = arch.layers
    if len(layers) < 2 or not isinstance(layers[-1], Conv) or not isinstance(layers[-2], Up):
        return None
    if layers[-2].mode != "nearest":
        return None
    H, W = arch.output_shape(shape)
    return H + W - 1 if layers[-1].filter >= 3 else 3 * H * W // 4


def null_space_basis(shape, *, device=None, dtype=None) -> torch.Tensor:
    """Basis (H + W − 1, H·W) of {f(i, j) = (−1)^(i+j)(a_i + b_j)} (not orthonormalised).

    This is null(K) for networks ending with Up('nearest') → Conv(q ≥ 3) (see
    :func:`null_space_dim`). Memory (H + W − 1)·H·W — small images only.
    """
    H, W = check_shape(shape)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    sign = ((-1.0) ** (np.arange(H)[:, None] + np.arange(W)[None]))
    vecs = []
    for a in range(H):
        f = np.zeros((H, W)); f[a, :] = 1.0
        vecs.append((sign * f).ravel())
    for b in range(1, W):
        f = np.zeros((H, W)); f[:, b] = 1.0
        vecs.append((sign * f).ravel())
    return torch.as_tensor(np.stack(vecs), device=dev, dtype=dt)
