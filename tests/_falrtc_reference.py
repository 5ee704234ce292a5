"""Reference FaLRTC: the loop-per-evaluation implementation bigntk shipped before the vectorised one
(commit 49635e5), kept verbatim for the equality test in ``tests/test_baselines_falrtc.py``."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from bigntk.backend import ACCUM_DTYPE, resolve_device, resolve_dtype, to_numpy, to_tensor


def _unfold(X: torch.Tensor, mode: int) -> torch.Tensor:
    return X.movedim(mode, 0).reshape(X.shape[mode], -1)


def _fold(A: torch.Tensor, mode: int, shape: Sequence[int]) -> torch.Tensor:
    moved = [shape[mode]] + [s for i, s in enumerate(shape) if i != mode]
    return A.reshape(moved).movedim(0, mode)


def _eigh(Gm: torch.Tensor):
    """Symmetric eigen-decomposition; LAPACK through numpy on the CPU (torch's threaded eigh of small
    matrices is orders of magnitude slower on a loaded machine)."""
    if Gm.device.type == "cpu":
        lam, U = np.linalg.eigh(Gm.numpy())
        return torch.from_numpy(lam), torch.from_numpy(U)
    return torch.linalg.eigh(Gm)


def _clipped_svd_part(A: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(U min(Σ, τ) Vᵀ, singular values) of A through the eigen-decomposition of its smaller Gram."""
    wide = A.shape[0] <= A.shape[1]
    M = A if wide else A.T
    Gm = (M.to(ACCUM_DTYPE) @ M.to(ACCUM_DTYPE).T)
    lam, U = _eigh(Gm)
    sig = lam.clamp_min(0).sqrt()
    scale = torch.where(sig > 0, torch.clamp(sig, max=tau) / sig.clamp_min(1e-300), torch.zeros_like(sig))
    P = ((U * scale) @ U.T).to(A.dtype) @ M
    return (P if wide else P.T), sig


def _singular_values(A: torch.Tensor) -> torch.Tensor:
    M = A if A.shape[0] <= A.shape[1] else A.T
    return _eigh(M.to(ACCUM_DTYPE) @ M.to(ACCUM_DTYPE).T)[0].clamp_min(0).sqrt()


def _smoothed(X: torch.Tensor, alpha: np.ndarray, mu: np.ndarray, with_grad: bool = True):
    """(f_μ(X), ∇f_μ(X) or None) of Σ_i α_i · smoothed ‖X_(i)‖_*."""
    f, grad = 0.0, (torch.zeros_like(X) if with_grad else None)
    for i in range(X.ndim):
        if alpha[i] == 0:
            continue
        tau = mu[i] / alpha[i]
        a2m = alpha[i] ** 2 / mu[i]
        if with_grad:
            P, sig = _clipped_svd_part(_unfold(X, i), tau)
            grad += a2m * _fold(P, i, X.shape)
        else:
            sig = _singular_values(_unfold(X, i))
        f += float(a2m * 0.5 * ((sig**2).sum() - ((sig - tau).clamp_min(0) ** 2).sum()))
    return f, grad


def complete_tensor(T, observed, *, alpha: Sequence[float] = (1.0, 1e-2, 1.0), mu_scale: float = 0.01,
           L0: float = 1e-5, C: float = 0.5, iterations: int = 20, init=None, device=None, dtype=None) -> np.ndarray:
    """Complete tensor ``T`` (any order) from the entries where ``observed`` (bool, same shape) is True.

    ``init``: starting tensor for the missing entries (default: the mean of the observed ones, as
    in Liu et al.'s code). Returns a numpy array of T's shape, observed entries unchanged.
    """
    if not 0 < C < 1:
        raise ValueError(f"C must be in (0, 1), got {C}")
    # float64 by default: the sufficient-decrease test compares f values ~1e8 to decreases ~1e-2
    dev, dt = resolve_device(device), (torch.float64 if dtype is None else resolve_dtype(dtype))
    T = to_tensor(np.asarray(T), dev, dt)
    obs = torch.as_tensor(np.array(observed, dtype=bool), device=dev)
    if obs.shape != T.shape:
        raise ValueError(f"observed has shape {tuple(obs.shape)}, tensor has {tuple(T.shape)}")
    a = np.asarray(alpha, dtype=np.float64)
    if a.size != T.ndim or (a < 0).any() or a.sum() <= 0:
        raise ValueError(f"alpha needs {T.ndim} non-negative weights, got {alpha}")
    a = a / a.sum()
    mu = mu_scale * a / np.sqrt(np.asarray(T.shape, dtype=np.float64))
    X = T.clone()
    fill = to_tensor(np.array(init), dev, dt) if init is not None else T[obs].mean()
    X = torch.where(obs, T, fill)
    Y, Z, B, L = X.clone(), X.clone(), 0.0, float(L0)
    free = (~obs).to(dt)
    for _ in range(int(iterations)):
        Ylast = Y
        while True:
            b = (1 + math.sqrt(1 + 4 * L * B)) / (2 * L)
            W = (b / (B + b)) * Z + (B / (B + b)) * Ylast
            fw, g = _smoothed(W, a, mu)
            g = g * free
            Y = W - g / L
            fy, _ = _smoothed(Y, a, mu, with_grad=False)
            if fy <= fw - float((g * g).sum()) / (2 * L) or L > 1e30:
                break
            L = L / C
        Z = Z - b * g
        B = B + b
    return to_numpy(torch.where(obs, T, Y)).astype(np.float32)


def predict(Y, cell, drug, qcell, qdrug, **kw) -> np.ndarray:
    """The old ``FaLRTC(init="cell_mean", **kw).fit(Y, cell, drug).predict(qcell, qdrug)``."""
    cells = np.unique(np.concatenate([cell, qcell]))
    drugs = np.unique(np.concatenate([drug, qdrug]))
    ci, di = np.searchsorted(cells, cell), np.searchsorted(drugs, drug)
    G = Y.shape[1]
    T = np.zeros((drugs.size, G, cells.size), dtype=np.float32)
    obs = np.zeros((drugs.size, 1, cells.size), dtype=bool)
    T[di, :, ci] = Y
    obs[di, 0, ci] = True
    means = np.zeros((cells.size, G))
    np.add.at(means, ci, Y.astype(np.float64))
    means = (means / np.maximum(np.bincount(ci, minlength=cells.size), 1)[:, None]).astype(np.float32)
    init = np.broadcast_to(means.T[None], T.shape)
    X = complete_tensor(T, np.broadcast_to(obs, T.shape), init=init, **kw)
    return X[np.searchsorted(drugs, qdrug), :, np.searchsorted(cells, qcell)].astype(np.float32)
