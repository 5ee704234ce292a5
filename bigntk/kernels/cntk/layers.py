"""Layer objects (stax style) and their kernel rules on two representations.

The same layer list also defines the finite network (as neural-tangents' stax gives init_fn/apply_fn and
kernel_fn from one list): ``Layer.module(cin, cout)`` is the layer's torch module and
``Serial.network(width, in_channels, out_channels)`` the whole ``torch.nn.Sequential`` (circular-padded
q × q convolutions with bias, He-initialised; stride-2 subsampling; nearest / bilinear upsampling), so
the DIP baseline trains exactly the architecture whose CNTK is computed.

Each layer maps the pair (Σ, Θ) — NNGP covariance and NTK of the pre-/post-activations — to the next
pair, on either representation:

* dense:   S, T of shape (h, h, w, w) (internal layout: y-pair dims first),
           S[i, k, j, l] = Σ((i, j), (k, l)).
* compact: S, T of shape (Py, h, Px, w) (internal layout: y-axis dims first), with
           S[a_y, v_y, a_x, v_x] = Σ((a_y, a_x), (a_y + v_y, a_x + v_x)) (offsets mod (h, w)),
           valid because Σ is invariant under joint shifts by the period (Py, Px).

``T`` is None before the first conv (Θ is then defined by the first conv: Θ = Σ).
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..._validation import check_image_shape as check_shape
from ..ntk import check_activation, relu_duals

__all__ = ["Layer", "Conv", "ReLU", "LeakyReLU", "Down", "Up", "Serial", "serial", "dip", "UPSAMPLE_MODES",
           "Subsample2"]

UPSAMPLE_MODES = ("nearest", "bilinear", "bilinear_aligned")
PERIODIC_UPSAMPLE = ("nearest", "bilinear")
Shape = Tuple[int, int]


# --------------------------------------------------------------------------------------- helpers
def _safe_rho(S: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Correlation S / norm, 0 where the norm vanishes (a pixel with zero prior features)."""
    pos = norm > 0
    return torch.where(pos, S / torch.where(pos, norm, torch.ones_like(norm)), torch.zeros_like(S))


def _activate_block(S: torch.Tensor, T: Optional[torch.Tensor], norm: torch.Tensor, slope: float) -> None:
    """In place: S ← √(d d′)·φ̌(ρ), T ← φ̌′(ρ)·T for one block; ``norm`` broadcasts against S."""
    rho = _safe_rho(S, norm)
    k1, k0 = relu_duals(rho, slope)
    S.copy_(k1 * norm)
    if T is not None:
        T.mul_(k0)


def up_taps(mode: str, n_in: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-axis upsampling n_in → 2·n_in as taps: (idx, weight), each (n_taps, 2·n_in).

    output[o] = Σ_t weight[t, o] · input[idx[t, o]].
    """
    o = np.arange(2 * n_in)
    m = o // 2
    if mode == "nearest":
        return m[None], np.ones((1, o.size))
    if mode == "bilinear":  # periodic half-pixel form
        even = (o % 2) == 0
        first = np.where(even, m - 1, m) % n_in
        second = np.where(even, m, m + 1) % n_in
        w_first = np.where(even, 0.25, 0.75)
        return np.stack([first, second]), np.stack([w_first, 1.0 - w_first])
    if mode == "bilinear_aligned":  # align_corners=True: output o samples input at o·(n−1)/(2n−1)
        pos = o * (n_in - 1) / max(2 * n_in - 1, 1)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        frac = pos - i0
        return np.stack([i0, i1]), np.stack([1.0 - frac, frac])
    raise ValueError(f"unknown upsample mode {mode!r}; choose one of {UPSAMPLE_MODES}")


def _upsample_flat(X: Optional[torch.Tensor], iy, wy, ix, wx, out_shape) -> Optional[torch.Tensor]:
    """Apply the separable up-sampling gathers (iy, wy) on rows and (ix, wx) on columns of the
    flattened compact form X (Py, h, Px, w) → ``out_shape``; None passes through."""
    if X is None:
        return None
    Py, h, Px, w = X.shape
    Xf = _index_axis(X.reshape(Py * h, Px * w), 0, iy, wy)
    return _index_axis(Xf, 1, ix, wx).reshape(out_shape)


def _index_axis(X: torch.Tensor, dim: int, idx: np.ndarray, w: np.ndarray) -> torch.Tensor:
    """Σ_t w[t] (broadcast along ``dim``) · X.index_select(dim, idx[t])."""
    uniform = np.all(w == w.flat[0])
    scale_out = None
    if uniform and w.flat[0] != 1.0:  # scale once (input or output, whichever is smaller)
        if X.shape[dim] <= idx.shape[1]:
            X = X * float(w.flat[0])
        else:
            scale_out = float(w.flat[0])
    shape = [1] * X.dim()
    shape[dim] = -1
    out, buf = None, None
    for t in range(idx.shape[0]):
        it = torch.as_tensor(idx[t], device=X.device)
        if out is None:
            out = X.index_select(dim, it)
            if not uniform:
                out.mul_(torch.as_tensor(w[t], device=X.device, dtype=X.dtype).view(shape))
            continue
        buf = torch.index_select(X, dim, it, out=buf) if buf is not None else X.index_select(dim, it)
        if not uniform:
            buf.mul_(torch.as_tensor(w[t], device=X.device, dtype=X.dtype).view(shape))
        out.add_(buf)
    return out if scale_out is None else out.mul_(scale_out)


# ----------------------------------------------------------------------------------------- layers
class Layer:
    """Base class: a layer knows its output shape and its kernel rule on both representations."""

    def out_shape(self, shape: Shape) -> Shape:
        return shape

    def out_period(self, period: Shape) -> Shape:
        return period

    def spec(self) -> dict:
        return {"layer": type(self).__name__}

    def module(self, cin: int, cout: int) -> nn.Module:
        """The finite layer: a torch module from ``cin`` channels (to ``cout`` for a Conv)."""
        raise NotImplementedError  # pragma: no cover - every concrete layer defines it

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "layer")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Layer) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(repr(self))


class Conv(Layer):
    """q×q convolution, circular padding, 1/q² scaling (odd q). Θ ← W[Σ + Θ], Σ ← W[Σ]."""

    def __init__(self, filter: int = 3) -> None:
        if isinstance(filter, bool) or not isinstance(filter, (int, np.integer)) or filter < 1 or filter % 2 == 0:
            raise ValueError(f"Conv filter size must be an odd integer >= 1, got {filter!r}")
        self.filter = int(filter)

    @property
    def radius(self) -> int:
        return self.filter // 2

    def spec(self) -> dict:
        return {"layer": "Conv", "filter": self.filter}

    def module(self, cin: int, cout: int) -> nn.Module:
        return nn.Conv2d(cin, cout, self.filter, padding=self.radius, padding_mode="circular")

    # W[X] along one axis pair; dense: joint roll of (dim_a, dim_b), compact: roll of the phase dim.
    def _avg_dense(self, X: torch.Tensor, dim: int) -> torch.Tensor:
        """Joint shift average on the pair axis ``dim`` (0: y pairs, 1: x pairs) of X (h·h, w·w)."""
        n = int(round(math.sqrt(X.shape[dim])))
        i = torch.arange(n, device=X.device)
        out = X.clone()
        for d in range(-self.radius, self.radius + 1):
            if d:
                idx = (((i[:, None] - d) % n) * n + (i[None] - d) % n).reshape(-1)
                out.add_(X.index_select(dim, idx))
        return out.mul_(1.0 / self.filter)

    def _avg_phase(self, X: torch.Tensor, dim: int) -> torch.Tensor:
        if X.shape[dim] == 1:  # period 1: a stationary covariance is unchanged by W
            return X
        out = X.clone()
        for d in range(1, self.radius + 1):
            out.add_(torch.roll(X, d, dim)).add_(torch.roll(X, -d, dim))
        return out.mul_(1.0 / self.filter)

    def _apply(self, S, T, avg, last: bool):
        T_new = avg(S if T is None else S + T)
        S_new = None if last else (T_new.clone() if T is None else avg(S))
        return S_new, T_new

    def dense(self, S, T, last: bool = False):
        h, w = S.shape[0], S.shape[2]
        avg = lambda X: self._avg_dense(self._avg_dense(X.reshape(h * h, w * w), 0), 1).reshape(h, h, w, w)
        return self._apply(S, T, avg, last)

    def compact(self, S, T, period, last: bool = False):
        avg = lambda X: self._avg_phase(self._avg_phase(X, 0), 2)
        S, T = self._apply(S, T, avg, last)
        return S, T, period


class LeakyReLU(Layer):
    """c·LeakyReLU(slope) with c² = 2/(1+slope²): normalised duals φ̌, φ̌′ (slope 0 = ReLU)."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = check_activation("leaky_relu", negative_slope)

    def spec(self) -> dict:
        return {"layer": "LeakyReLU", "negative_slope": self.negative_slope}

    def module(self, cin: int, cout: int) -> nn.Module:
        return nn.ReLU() if self.negative_slope == 0.0 else nn.LeakyReLU(self.negative_slope)

    def dense(self, S, T, last: bool = False, block: int = 8):
        h = S.shape[0]
        d = torch.einsum("iijj->ij", S).clone()  # (h, w) diagonal
        for i0 in range(0, h, block):
            sl = slice(i0, min(i0 + block, h))
            norm = (d[sl][:, None, :, None] * d[None, :, None, :]).sqrt()
            _activate_block(S[sl], None if T is None else T[sl], norm, self.negative_slope)
        return S, T

    def compact(self, S, T, period, last: bool = False):
        Py, h, Px, w = S.shape
        d = S[:, 0, :, 0].clone()  # (Py, Px) diagonal per phase
        if bool((d == d.reshape(-1)[0]).all()):
            _activate_block(S, T, d.reshape(-1)[0].abs(), self.negative_slope)
            return S, T, period
        # general: √(d[a] · d[(a + v) mod P]) per entry, built block by block over y-phases
        ry = (torch.arange(Py, device=S.device)[:, None] + torch.arange(h, device=S.device)[None]) % Py
        rx = (torch.arange(Px, device=S.device)[:, None] + torch.arange(w, device=S.device)[None]) % Px
        for a in range(Py):
            d_right = d[ry[a][:, None, None], rx[None]]  # (h, Px, w)
            norm = (d[a][None, :, None] * d_right).sqrt()
            _activate_block(S[a], None if T is None else T[a], norm, self.negative_slope)
        return S, T, period


class ReLU(LeakyReLU):
    """√2·ReLU with the arc-cosine duals."""

    def __init__(self) -> None:
        self.negative_slope = 0.0

    def spec(self) -> dict:
        return {"layer": "ReLU"}


class Subsample2(nn.Module):
    """The finite Down layer: keep even coordinates of (N, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., ::2, ::2]


class Down(Layer):
    """Stride-2 subsampling: keep even coordinates (a stride-2 conv = Conv then Down)."""

    def module(self, cin: int, cout: int) -> nn.Module:
        return Subsample2()

    def out_shape(self, shape: Shape) -> Shape:
        if shape[0] % 2 or shape[1] % 2:
            raise ValueError(f"Down needs an even spatial shape, got {shape[0]}x{shape[1]}")
        return shape[0] // 2, shape[1] // 2

    def out_period(self, period: Shape) -> Shape:
        return tuple(p // 2 if p % 2 == 0 else p for p in period)

    def dense(self, S, T, last: bool = False):
        sub = lambda X: None if X is None else X[::2, ::2, ::2, ::2].contiguous()
        return sub(S), sub(T)

    def compact(self, S, T, period, last: bool = False):
        Py, h, Px, w = S.shape
        Qy, Qx = self.out_period((Py, Px))

        def sub(X):
            if X is None:
                return None
            iy = torch.as_tensor((2 * np.arange(Qy)) % Py, device=X.device)
            ix = torch.as_tensor((2 * np.arange(Qx)) % Px, device=X.device)
            return X.index_select(0, iy)[:, ::2].index_select(2, ix)[:, :, :, ::2].contiguous()

        return sub(S), sub(T), (Qy, Qx)


class Up(Layer):
    """×2 upsampling: 'nearest', periodic 'bilinear' or 'bilinear_aligned' (dense only)."""

    def __init__(self, mode: str = "nearest") -> None:
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsample mode {mode!r}; choose one of {UPSAMPLE_MODES}")
        self.mode = mode

    def spec(self) -> dict:
        return {"layer": "Up", "mode": self.mode}

    def module(self, cin: int, cout: int) -> nn.Module:
        """nn.Upsample ×2. 'bilinear' is torch's half-pixel form, which clamps at the border where the
        kernel's is periodic; 'bilinear_aligned' is align_corners=True."""
        if self.mode == "nearest":
            return nn.Upsample(scale_factor=2, mode="nearest")
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=self.mode == "bilinear_aligned")

    def out_shape(self, shape: Shape) -> Shape:
        return shape[0] * 2, shape[1] * 2

    def out_period(self, period: Shape) -> Shape:
        return period[0] * 2, period[1] * 2

    def dense(self, S, T, last: bool = False):
        h, w = S.shape[0], S.shape[2]
        iy, wy = up_taps(self.mode, h)
        ix, wx = up_taps(self.mode, w)

        def up(X):
            if X is None:
                return None
            for dim in (0, 1):
                X = _index_axis(X, dim, iy, wy)
            for dim in (2, 3):
                X = _index_axis(X, dim, ix, wx)
            return X

        return up(S), up(T)

    def compact_index(self, P: int, n: int) -> Tuple[np.ndarray, np.ndarray]:
        """Flat gather (idx, weight), each (n_terms, 2P·2n), for one axis of the compact form.

        Output (phase a, offset v) reads input (phase m mod P, offset (m′ − m) mod n) with
        m = idx[a], m′ = idx[(a + v) mod 2n] for every pair of taps.
        """
        if self.mode not in PERIODIC_UPSAMPLE:
            raise ValueError(
                f"upsample mode {self.mode!r} is not periodic: use the dense kernel "
                "(dense_kernel) or upsample='nearest'/'bilinear' for the compact kernel"
            )
        idx, wt = up_taps(self.mode, n)
        a = np.arange(2 * P)[:, None]
        u2 = (a + np.arange(2 * n)[None]) % (2 * n)  # (2P, 2n) absolute right pixel
        terms_i, terms_w = [], []
        for t in range(idx.shape[0]):
            for t2 in range(idx.shape[0]):
                m = idx[t][a]  # (2P, 1)
                m2 = idx[t2][u2]
                flat = (m % P) * n + (m2 - m) % n
                weight = wt[t][a] * wt[t2][u2]
                terms_i.append(flat.reshape(-1))
                terms_w.append(weight.reshape(-1))
        return np.stack(terms_i), np.stack(terms_w)

    def fused_index(self, P: int, n: int, conv: Optional["Conv"], phases: Optional[np.ndarray] = None):
        """Gather (idx, weight) of Up followed by ``conv`` on one axis (conv None: Up alone).

        The conv averages over output phases a + δ, so Conv∘Up is one weighted gather from the
        smaller pre-Up array. ``phases`` restricts the output phases (streaming); default all 2P.
        """
        idx, wt = self.compact_index(P, n)
        a = np.arange(2 * P) if phases is None else np.asarray(phases)
        r = 0 if conv is None else conv.radius
        q = 1 if conv is None else conv.filter
        terms_i, terms_w = [], []
        for d in range(-r, r + 1):
            rows = ((((a + d) % (2 * P))[:, None]) * (2 * n) + np.arange(2 * n)[None]).reshape(-1)
            terms_i.append(idx[:, rows])
            terms_w.append(wt[:, rows] / q)
        return np.concatenate(terms_i), np.concatenate(terms_w)

    def compact_fused(self, S, T, period, conv: Optional["Conv"], last: bool = False,
                      phases_y: Optional[np.ndarray] = None, st_sum: Optional[torch.Tensor] = None):
        """Up (then ``conv`` if given) on the compact form: Σ ← WUΣ, Θ ← WU(Σ + Θ).

        ``st_sum``: Σ + Θ precomputed once by a caller that streams many blocks."""
        Py, h, Px, w = S.shape
        iy, wy = self.fused_index(Py, h, conv, phases_y)
        ix, wx = self.fused_index(Px, w, conv)
        n_py = (2 * Py) if phases_y is None else len(phases_y)

        def up(X):
            return _upsample_flat(X, iy, wy, ix, wx, (n_py, 2 * h, 2 * Px, 2 * w))

        if conv is None:
            return up(S), up(T), (2 * Py, 2 * Px)
        T_new = up(st_sum if st_sum is not None else (S if T is None else S + T))
        S_new = None if last else up(S)
        return S_new, T_new, (2 * Py, 2 * Px)

    def compact(self, S, T, period, last: bool = False, phases_y: Optional[np.ndarray] = None):
        """Upsample the compact form; ``phases_y`` restricts the output y-phases (streaming)."""
        Py, h, Px, w = S.shape
        iy, wy = self.compact_index(Py, h)
        ix, wx = self.compact_index(Px, w)
        n_out_y = 2 * h
        if phases_y is not None:  # keep only rows of the chosen output y-phases
            rows = (np.asarray(phases_y)[:, None] * n_out_y + np.arange(n_out_y)[None]).reshape(-1)
            iy, wy = iy[:, rows], wy[:, rows]
        n_py = (2 * Py) if phases_y is None else len(phases_y)

        def up(X):
            return _upsample_flat(X, iy, wy, ix, wx, (n_py, n_out_y, 2 * Px, 2 * w))

        return up(S), up(T), (2 * Py, 2 * Px)


# ---------------------------------------------------------------------------------- architecture
class Serial:
    """A composition of layers (the architecture). Validates shapes and knows its output period."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        layers = tuple(layers)
        if not layers:
            raise ValueError("an architecture needs at least one layer")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"architecture entries must be Layer objects, got {type(layer).__name__}")
        if not isinstance(layers[0], Conv):
            raise ValueError(f"the first layer must be a Conv, got {layers[0]!r}")
        self.layers = layers

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return "serial(" + ", ".join(map(repr, self.layers)) + ")"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Serial) and self.spec() == other.spec()

    def spec(self) -> List[dict]:
        """JSON-able description (used for content addressing)."""
        return [layer.spec() for layer in self.layers]

    @classmethod
    def from_spec(cls, spec: Sequence[dict]) -> "Serial":
        make = {
            "Conv": lambda d: Conv(d["filter"]),
            "ReLU": lambda d: ReLU(),
            "LeakyReLU": lambda d: LeakyReLU(d["negative_slope"]),
            "Down": lambda d: Down(),
            "Up": lambda d: Up(d["mode"]),
        }
        return cls([make[d["layer"]](d) for d in spec])

    @property
    def n_down(self) -> int:
        return sum(isinstance(l, Down) for l in self.layers)

    @property
    def n_up(self) -> int:
        return sum(isinstance(l, Up) for l in self.layers)

    @property
    def periodic(self) -> bool:
        """True when every layer commutes with shifts (all Up layers periodic)."""
        return all(l.mode in PERIODIC_UPSAMPLE for l in self.layers if isinstance(l, Up))

    @property
    def upsample_modes(self) -> Tuple[str, ...]:
        return tuple(sorted({l.mode for l in self.layers if isinstance(l, Up)}))

    def output_period(self) -> Shape:
        period: Shape = (1, 1)
        for layer in self.layers:
            period = layer.out_period(period)
        return period

    def output_shape(self, shape: Shape) -> Shape:
        """Validate ``shape`` (H, W) through every layer; return the output shape."""
        shape = check_shape(shape)
        cur = shape
        for k, layer in enumerate(self.layers):
            try:
                cur = layer.out_shape(cur)
            except ValueError as err:
                need = 2 ** self.n_down
                raise ValueError(
                    f"shape {shape[0]}x{shape[1]} does not fit the architecture (layer {k}: {err}); "
                    f"H and W must be divisible by 2^{self.n_down} = {need}"
                ) from None
        return cur

    def final_conv_index(self) -> int:
        """Index of the last layer when it is a Conv (its Σ is never needed), else −1."""
        return len(self.layers) - 1 if isinstance(self.layers[-1], Conv) else -1

    def tail_start(self) -> int:
        """Index of the last Up layer (−1 without one): the layers from there on are streamed."""
        ups = [k for k, l in enumerate(self.layers) if isinstance(l, Up)]
        return ups[-1] if ups else -1

    def network(self, width: int = 64, in_channels: int = 32, out_channels: int = 3,
                output: Optional[str] = None) -> nn.Sequential:
        """The finite network of this architecture: one torch module per layer, in order.

        Convolutions map to ``width`` channels, the last one to ``out_channels``; ``output="sigmoid"``
        appends a sigmoid. Convolutions are He-initialised (for the architecture's activation slope)
        with zero biases: the variance of a small input survives the 2·levels + 1 convolutions
        (PyTorch's default init shrinks it about 3× per layer). Input (N, in_channels, H, W).
        """
        if output not in (None, "sigmoid"):
            raise ValueError(f"output must be None or 'sigmoid', got {output!r}")
        last_conv = max(k for k, l in enumerate(self.layers) if isinstance(l, Conv))
        modules, cin = [], int(in_channels)
        for k, layer in enumerate(self.layers):
            cout = (int(out_channels) if k == last_conv else int(width)) if isinstance(layer, Conv) else cin
            modules.append(layer.module(cin, cout))
            cin = cout
        if output == "sigmoid":
            modules.append(nn.Sigmoid())
        net = nn.Sequential(*modules)
        slope = next((l.negative_slope for l in self.layers if isinstance(l, LeakyReLU)), 0.0)
        for mod in net.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, a=slope, nonlinearity="leaky_relu")
                nn.init.zeros_(mod.bias)
        return net


def serial(*layers: Layer) -> Serial:
    """stax-style composition: ``serial(Conv(3), ReLU(), Down(), ...)``."""
    return Serial(layers)


def _activation(activation: str, negative_slope: float) -> Layer:
    slope = check_activation(activation, negative_slope)
    return ReLU() if activation == "relu" else LeakyReLU(slope)


def dip(
    levels: int,
    filter: int = 3,
    convs_per_level: int = 1,
    upsample: str = "nearest",
    activation: str = "relu",
    negative_slope: float = 0.01,
) -> Serial:
    """The paper's encoder–decoder with s = ``levels`` down/up-samplings.

    [(Conv–act)×c, Down]×s, (Conv–act)×c, [Up, (Conv–act)×c]×(s−1), Up, (Conv–act)×(c−1), Conv.
    Images must have H, W divisible by 2^s; the output period is 2^s.
    """
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 0:
        raise ValueError(f"levels must be an integer >= 0, got {levels!r}")
    if isinstance(convs_per_level, bool) or not isinstance(convs_per_level, (int, np.integer)) or convs_per_level < 1:
        raise ValueError(f"convs_per_level must be an integer >= 1, got {convs_per_level!r}")
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"unknown upsample mode {upsample!r}; choose one of {UPSAMPLE_MODES}")
    act = lambda: _activation(activation, negative_slope)
    block = lambda: [m for _ in range(convs_per_level) for m in (Conv(filter), act())]
    layers: List[Layer] = []
    for _ in range(levels):
        layers += block() + [Down()]
    layers += block()
    for _ in range(max(levels - 1, 0)):
        layers += [Up(upsample)] + block()
    if levels >= 1:
        layers += [Up(upsample)] + block()[:-1]
    else:
        layers += [Conv(filter)]
    return Serial(layers)
