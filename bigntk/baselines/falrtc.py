"""FaLRTC: fast low-rank tensor completion (Liu, Musialski, Wonka & Ye, PAMI 2013).

Minimises the smoothed sum of weighted nuclear norms of the tensor's mode unfoldings,
Σ_i α_i ‖X_(i)‖_*, subject to X = T on the observed entries, by Nesterov's accelerated gradient
with a backtracking Lipschitz estimate L (L ← L / C when the sufficient-decrease test fails).
The smoothing of mode i, max_{‖Y‖₂≤1} α_i⟨X_(i), Y⟩ − μ_i/2 ‖Y‖_F², has gradient
(α_i²/μ_i) · U min(Σ, μ_i/α_i) Vᵀ (singular values clipped at μ_i/α_i).

CMap use (Hodos et al. 2018 settings): tensor drugs × genes × cells, α = [1, 1e-2, 1] normalised,
μ_i = 0.01·α_i/√n_i, C = 0.5, L0 = 1e-5, 20 iterations; whole (drug, :, cell) fibres missing.

Implementation (torch, on ``bigntk.backend``'s device): every unfolding is handled as a (A, n_i, B)
view of the tensor, its Gram X_(i) X_(i)ᵀ and the product Q X_(i) by a few large matrix products
over blocks of A (no copy of the whole tensor, no loop over entries); the SVD is the eigen-
decomposition of that Gram. The iterates live in five preallocated tensors. While B = 0 (the first
iteration) the extrapolation point W = Z does not depend on L, so the gradient is computed once and
each backtracking step only re-evaluates f(W − g/L) from Gram(W) − 2 sym(W gᵀ)/L + Gram(g)/L²
(eigenvalues only) — the old code recomputed everything at each of those steps (12 on the
20k-profile CMap store, ~16 on small tensors). See docs/cmap.md, "Baselines at scale".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ..backend import ACCUM_DTYPE, memory_budget, resolve_device, resolve_dtype, to_numpy, to_tensor
from ..priors import group_means
from ..progress import bar
from ._common import check_pairs, check_query

#: elements of one block of an unfolding handled at once (a copy only for middle modes / casts)
BLOCK_ELEMS = 2**23
#: full-size working tensors of the iteration (Z, Y, Y_last, W, g)
N_WORK = 5


@dataclass(frozen=True)
class _Smoothing:
    """Weights of the smoothed objective: α_i (normalised), μ_i, for modes with α_i > 0."""

    alpha: np.ndarray  # (ndim,)
    mu: np.ndarray  # (ndim,)

    @property
    def modes(self) -> list[int]:
        return [i for i in range(self.alpha.size) if self.alpha[i] > 0]

    def tau(self, i: int) -> float:
        return float(self.mu[i] / self.alpha[i])

    def a2m(self, i: int) -> float:
        return float(self.alpha[i] ** 2 / self.mu[i])

    def value(self, i: int, sig: torch.Tensor) -> float:
        """α_i · smoothed ‖·‖_* of an unfolding with singular values ``sig``."""
        tau = self.tau(i)
        return float(self.a2m(i) * 0.5 * ((sig**2).sum() - ((sig - tau).clamp_min(0) ** 2).sum()))


def _mode_view(X: torch.Tensor, mode: int) -> torch.Tensor:
    """(A, n_mode, B) view of X: the mode-``mode`` unfolding is [V[0], V[1], …] up to column order."""
    A = math.prod(X.shape[:mode])
    return X.reshape(A, X.shape[mode], -1)


def _blocks(V: torch.Tensor, step_elems: int) -> Iterator[tuple[slice, slice]]:
    """(A-slice, B-slice) blocks of a (A, n, B) view with about ``step_elems`` elements each."""
    A, n, B = V.shape
    if A == 1:
        w = max(1, step_elems // max(n, 1))
        for j in range(0, B, w):
            yield slice(0, 1), slice(j, min(j + w, B))
        return
    h = max(1, step_elems // max(n * B, 1))
    for a in range(0, A, h):
        yield slice(a, min(a + h, A)), slice(0, B)


def _as_matrix(block: torch.Tensor) -> torch.Tensor:
    """(n, a·b) matrix of a (a, n, b) block (a view when a == 1 or b == 1)."""
    if block.shape[0] == 1:
        return block[0]
    if block.shape[2] == 1:
        return block[:, :, 0].T
    return block.transpose(0, 1).reshape(block.shape[1], -1)


def _add_sym_product(out: torch.Tensor, M: torch.Tensor, rows: int = 256) -> None:
    """out += M Mᵀ computing only the lower triangle of row blocks (≈ half the flops of M @ M.T)."""
    n = M.shape[0]
    cuts = list(range(0, n, rows)) + [n]
    for i in range(len(cuts) - 1):
        ri = slice(cuts[i], cuts[i + 1])
        Ri = M[ri] @ M[: cuts[i + 1]].T  # (rows, cuts[i+1]): blocks (i, 0..i)
        out[ri, : cuts[i + 1]] += Ri
        out[: cuts[i], ri] += Ri[:, : cuts[i]].T


def _gram(X: torch.Tensor, mode: int, other: Optional[torch.Tensor] = None) -> torch.Tensor:
    """X_(mode) @ other_(mode)ᵀ (default other = X), (n_mode, n_mode) in ACCUM_DTYPE."""
    V = _mode_view(X, mode)
    O = V if other is None else _mode_view(other, mode)
    n = V.shape[1]
    out = torch.zeros(n, n, dtype=ACCUM_DTYPE, device=X.device)
    for sa, sb in _blocks(V, BLOCK_ELEMS):
        M = _as_matrix(V[sa, :, sb]).to(ACCUM_DTYPE)
        if other is None:
            _add_sym_product(out, M)
        else:
            out += M @ _as_matrix(O[sa, :, sb]).to(ACCUM_DTYPE).T
    return out


def _add_product(out: torch.Tensor, Q: torch.Tensor, X: torch.Tensor, mode: int, weight: float) -> None:
    """out += weight · fold_mode(Q @ X_(mode)) in place (out contiguous); Q (n_mode, n_mode) symmetric."""
    if not out.is_contiguous():
        raise ValueError("_add_product writes through a view: out must be contiguous")
    V, O = _mode_view(X, mode), _mode_view(out, mode)
    Qw = Q.to(X.dtype)
    for sa, sb in _blocks(V, BLOCK_ELEMS):
        if V.shape[0] == 1:
            O[0, :, sb].addmm_(Qw, V[0, :, sb], alpha=weight)
        elif V.shape[2] == 1:
            O[sa, :, 0].addmm_(V[sa, :, 0], Qw, alpha=weight)
        else:
            O[sa].add_(torch.matmul(Qw, V[sa]), alpha=weight)


def _eigh(Gm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric eigen-decomposition; LAPACK through numpy on the CPU (torch's threaded eigh of small
    matrices is orders of magnitude slower on a loaded machine)."""
    if Gm.device.type == "cpu":
        lam, U = np.linalg.eigh(Gm.numpy())
        return torch.from_numpy(lam), torch.from_numpy(U)
    return torch.linalg.eigh(Gm)


def _singular_values(Gm: torch.Tensor) -> torch.Tensor:
    """Singular values of a matrix from its Gram (eigenvalues only)."""
    lam = torch.from_numpy(np.linalg.eigvalsh(Gm.numpy())) if Gm.device.type == "cpu" else torch.linalg.eigvalsh(Gm)
    return lam.clamp_min(0).sqrt()


def _value_and_grad(W: torch.Tensor, observed: torch.Tensor, sm: _Smoothing, g: torch.Tensor
                    ) -> tuple[float, dict[int, torch.Tensor]]:
    """f_μ(W); writes ∇f_μ(W), zero on the observed entries, into ``g``; returns W's mode Grams too."""
    g.zero_()
    f, grams = 0.0, {}
    for i in sm.modes:
        Gm = _gram(W, i)
        lam, U = _eigh(Gm)
        sig = lam.clamp_min(0).sqrt()
        f += sm.value(i, sig)
        tau = sm.tau(i)
        scale = torch.where(sig > 0, torch.clamp(sig, max=tau) / sig.clamp_min(1e-300), torch.zeros_like(sig))
        _add_product(g, (U * scale) @ U.T, W, i, sm.a2m(i))
        grams[i] = Gm
    g.masked_fill_(observed, 0.0)
    return f, grams


def _value(grams: dict[int, torch.Tensor], sm: _Smoothing) -> float:
    """f_μ of the tensor whose mode Grams are ``grams``."""
    return sum(sm.value(i, _singular_values(Gm)) for i, Gm in grams.items())


@dataclass
class _State:
    """Iterates of the accelerated scheme: Z, Y (last accepted), buffers W, g, Y_new; scalars B, L."""

    Z: torch.Tensor
    Y: torch.Tensor
    W: torch.Tensor
    g: torch.Tensor
    Ynew: torch.Tensor
    B: float
    L: float


def _step(s: _State, observed: torch.Tensor, sm: _Smoothing, C: float) -> int:
    """One FaLRTC iteration in place (Liu et al. Alg. 3); returns the number of backtracking steps."""
    fw, expand, steps = None, None, 0
    while True:
        b = (1 + math.sqrt(1 + 4 * s.L * s.B)) / (2 * s.L)
        if fw is None or s.B != 0:  # W = Z for every L while B = 0: keep f(W), g
            torch.mul(s.Z, b / (s.B + b), out=s.W).add_(s.Y, alpha=s.B / (s.B + b))
            fw, gram_w = _value_and_grad(s.W, observed, sm, s.g)
            gg = float(torch.dot(s.g.reshape(-1), s.g.reshape(-1)))
        if expand is None:
            torch.add(s.W, s.g, alpha=-1.0 / s.L, out=s.Ynew)
            fy = _value({i: _gram(s.Ynew, i) for i in sm.modes}, sm)
        else:
            cross, gram_g = expand
            fy = _value({i: gram_w[i] - (cross[i] + cross[i].T) / s.L + gram_g[i] / s.L**2 for i in sm.modes}, sm)
        if fy <= fw - gg / (2 * s.L) or s.L > 1e30:
            break
        if s.B == 0 and expand is None:
            expand = ({i: _gram(s.W, i, s.g) for i in sm.modes}, {i: _gram(s.g, i) for i in sm.modes})
        s.L, steps = s.L / C, steps + 1
    if expand is not None:
        torch.add(s.W, s.g, alpha=-1.0 / s.L, out=s.Ynew)
    s.Z.sub_(s.g, alpha=b)
    s.B += b
    s.Y, s.Ynew = s.Ynew, s.Y
    return steps


def falrtc_bytes(shape: Sequence[int], dtype: torch.dtype = torch.float64, extra: int = 0) -> int:
    """Peak bytes of the FaLRTC iteration on a tensor of ``shape``: the five working tensors, two
    blocks of an unfolding, the mode Grams (float64) with their eigenvectors, plus ``extra`` bytes
    (the caller's mask and kept observed values)."""
    n = math.prod(shape)
    item = torch.finfo(dtype).bits // 8
    grams = sum(6 * s * s * 8 for s in shape)
    return N_WORK * n * item + 2 * BLOCK_ELEMS * 8 + grams + int(extra)


def check_falrtc_fits(shape: Sequence[int], device: torch.device, dtype: torch.dtype, budget=None,
                      extra: int = 0) -> None:
    """Refuse, before allocating, a tensor whose FaLRTC needs more than the memory budget."""
    need, have = falrtc_bytes(shape, dtype, extra), memory_budget(device, budget)
    if need > have:
        raise MemoryError(
            f"FaLRTC on a {' x '.join(map(str, shape))} tensor needs about {need / 1e9:.2f} GB "
            f"({N_WORK} working copies in {str(dtype).replace('torch.', '')}), over the memory budget "
            f"{have / 1e9:.2f} GB; raise memory_budget= (or $BIGNTK_MEMORY_BUDGET), or complete fewer drugs")


def _smoothing(alpha: Sequence[float], mu_scale: float, shape: Sequence[int]) -> _Smoothing:
    a = np.asarray(alpha, dtype=np.float64)
    if a.size != len(shape) or (a < 0).any() or a.sum() <= 0:
        raise ValueError(f"alpha needs {len(shape)} non-negative weights, got {alpha}")
    a = a / a.sum()
    return _Smoothing(a, mu_scale * a / np.sqrt(np.asarray(shape, dtype=np.float64)))


def run_falrtc(X: torch.Tensor, observed: torch.Tensor, sm: _Smoothing, *, L0: float, C: float,
               iterations: int, progress: bool = True) -> torch.Tensor:
    """The iteration from the filled start ``X`` (overwritten; (n_1, …, n_N)), ``observed`` bool
    broadcastable to X. Returns the last accepted iterate Y (observed entries as X's up to rounding)."""
    if not 0 < C < 1:
        raise ValueError(f"C must be in (0, 1), got {C}")
    X = X.contiguous()  # the mode views below are views only of a contiguous tensor
    s = _State(X, X.clone(), torch.empty_like(X), torch.empty_like(X), torch.empty_like(X), 0.0, float(L0))
    with bar(int(iterations), desc="FaLRTC", progress=progress, unit="it") as pb:
        for _ in range(int(iterations)):
            steps = _step(s, observed, sm, C)
            pb.set_postfix(L=f"{s.L:.3g}", backtracks=steps, refresh=False)
            pb.update(1)
    return s.Y


def complete_tensor(T, observed, *, alpha: Sequence[float] = (1.0, 1e-2, 1.0), mu_scale: float = 0.01,
                    L0: float = 1e-5, C: float = 0.5, iterations: int = 20, init=None, device=None, dtype=None,
                    memory_budget=None, progress: bool = True) -> np.ndarray:
    """Complete tensor ``T`` (any order) from the entries where ``observed`` (bool, same shape) is True.

    ``init``: starting values for the missing entries, broadcastable to T (default: the mean of the
    observed ones, as in Liu et al.'s code). float64 by default (the sufficient-decrease test compares
    f values ~1e8 to decreases ~1e-2). Raises ``MemoryError`` up front when the iteration's
    :func:`falrtc_bytes` exceed ``memory_budget`` (:func:`bigntk.backend.memory_budget`).
    Returns a float32 numpy array of T's shape, observed entries unchanged.
    """
    dev, dt = resolve_device(device), (torch.float64 if dtype is None else resolve_dtype(dtype))
    T = np.asarray(T)
    sm = _smoothing(alpha, mu_scale, T.shape)
    obs = torch.as_tensor(np.ascontiguousarray(observed, dtype=bool), device=dev)
    if obs.shape != T.shape:
        raise ValueError(f"observed has shape {tuple(obs.shape)}, tensor has {T.shape}")
    item = torch.finfo(dt).bits // 8
    check_falrtc_fits(T.shape, dev, dt, memory_budget, extra=T.size * (1 + item))  # mask + kept values
    X = to_tensor(T, dev, dt)
    kept = X[obs]
    fill = to_tensor(np.asarray(init), dev, dt) if init is not None else kept.mean()
    X = torch.where(obs, X, fill)
    Y = run_falrtc(X, obs, sm, L0=L0, C=C, iterations=iterations, progress=progress)
    Y[obs] = kept
    return to_numpy(Y).astype(np.float32)


class FaLRTC(BaseEstimator):
    """FaLRTC on the drugs × genes × cells tensor of a (cell, drug) → profile table.

    ``alpha`` weights the drugs, genes and cells modes in that order. ``init="cell_mean"`` starts each
    missing fibre from its cell line's mean profile; ``init="mean"`` (Liu et al.'s code) from the mean
    of all observed entries. Internally the tensor is stored drugs × cells × genes, so that the
    observed fibres are rows of a (drugs·cells, genes) matrix and only the 20-long cells mode needs
    blocked copies. A scikit-learn estimator: parameters are stored as given and checked by ``fit``.
    """

    def __init__(self, alpha=(1.0, 1e-2, 1.0), mu_scale: float = 0.01, L0: float = 1e-5, C: float = 0.5,
                 iterations: int = 20, init: str = "cell_mean", device=None, dtype=None,
                 memory_budget=None, progress: bool = True) -> None:
        self.alpha, self.mu_scale, self.L0, self.C = alpha, mu_scale, L0, C
        self.iterations, self.init, self.progress = iterations, init, progress
        self.device, self.dtype, self.memory_budget = device, dtype, memory_budget

    def fit(self, Y, cell, drug) -> "FaLRTC":
        """Store the training table: Y (n, G), cell (n,), drug (n,). The completion runs in predict."""
        if self.init not in ("cell_mean", "mean"):
            raise ValueError(f"init must be 'cell_mean' or 'mean', got {self.init!r}")
        if len(self.alpha) != 3:
            raise ValueError(f"alpha needs 3 weights (drugs, genes, cells), got {self.alpha}")
        self.Y_, self.cell_, self.drug_ = check_pairs(Y, cell, drug)
        return self

    def predict(self, cell, drug) -> np.ndarray:
        """(n_query, G) float32 completed fibres of the query pairs."""
        cell, drug = check_query(cell, drug)
        cells = np.unique(np.concatenate([self.cell_, cell]))
        drugs = np.unique(np.concatenate([self.drug_, drug]))
        ci, di = np.searchsorted(cells, self.cell_), np.searchsorted(drugs, self.drug_)
        dev = resolve_device(self.device)
        dt = torch.float64 if self.dtype is None else resolve_dtype(self.dtype)
        shape = (drugs.size, cells.size, self.Y_.shape[1])
        check_falrtc_fits(shape, dev, dt, self.memory_budget, extra=shape[0] * shape[1])  # fibre mask
        X = self._start(shape, ci, di, dev, dt)
        rows = torch.as_tensor(di * cells.size + ci, device=dev)
        obs = torch.zeros(shape[0] * shape[1], dtype=torch.bool, device=dev)
        obs[rows] = True
        sm = _smoothing((self.alpha[0], self.alpha[2], self.alpha[1]), self.mu_scale, shape)
        Yt = run_falrtc(X, obs.reshape(shape[0], shape[1], 1), sm, L0=self.L0, C=self.C,
                        iterations=int(self.iterations), progress=self.progress)
        q = torch.as_tensor(np.searchsorted(drugs, drug) * cells.size + np.searchsorted(cells, cell), device=dev)
        out = Yt.reshape(-1, shape[2])[q]
        seen = obs[q]
        out[seen] = to_tensor(self._observed_rows(di * cells.size + ci, to_numpy(q[seen])), dev, dt)
        return to_numpy(out).astype(np.float32)

    def _start(self, shape, ci: np.ndarray, di: np.ndarray, dev: torch.device, dt: torch.dtype) -> torch.Tensor:
        """(drugs, cells, genes) start: observed fibres, missing ones at the cell (or global) mean."""
        if self.init == "cell_mean":
            means, _ = group_means(self.Y_, ci, shape[1])  # (n_cells, G)
            X = to_tensor(np.asarray(means, dtype=np.float32), dev, dt)[None].repeat(shape[0], 1, 1)
        else:
            X = torch.full(shape, float(np.mean(self.Y_, dtype=np.float64)), dtype=dt, device=dev)
        X.reshape(-1, shape[2])[torch.as_tensor(di * shape[1] + ci, device=dev)] = to_tensor(self.Y_, dev, dt)
        return X

    def _observed_rows(self, train_rows: np.ndarray, query_rows: np.ndarray) -> np.ndarray:
        """Training profiles (float32) of the query rows that were observed."""
        order = np.argsort(train_rows)
        return self.Y_[order[np.searchsorted(train_rows[order], query_rows)]]
