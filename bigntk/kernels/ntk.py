"""Fully connected NTK for matrix completion (Radhakrishnan et al., PNAS 2022, Theorem 1).

For a network f_Z(W) = W_d C φ(W_{d-1} … C φ(W_1 Z)) fed a feature prior Z with unit columns,
the NTK between entries (i, j) and (i', j') of the completed matrix is

    K[(i, j), (i', j')] = κ_d(z_jᵀ z_j')  if i = i',   0 otherwise,

with κ_d built by the recursion (d = number of hidden layers, ``depth``)

    Σ⁰ = Θ⁰ = ρ,   Σʰ = φ̌(Σʰ⁻¹),   Θʰ = Σʰ + Θʰ⁻¹ · φ̌′(Σʰ⁻¹),   κ_d = Θᵈ.

φ̌ is the *normalised* dual activation (φ̌(1) = 1): φ = c·LeakyReLU(slope), c² = 2 / (1 + slope²).
For ReLU (slope 0):

    φ̌(ρ)  = [√(1−ρ²) + ρ(π − arccos ρ)] / π            (arc-cosine kernel of degree 1)
    φ̌′(ρ) = (π − arccos ρ) / π                          (degree 0)

and for LeakyReLU(a): φ̌ = [(1−a)²·φ̌_relu + 2aρ] / (1+a²), φ̌′ = [(1−a)²·φ̌′_relu + 2a] / (1+a²).
Then κ_1(ρ) = φ̌(ρ) + ρ φ̌′(ρ) is the paper code's kernel, and κ_d(1) = d + 1.
"""
from __future__ import annotations

import math
from typing import Any, Tuple

import numpy as np
import torch

__all__ = ["ACTIVATIONS", "dual", "dual_derivative", "relu_duals", "ntk", "ntk_", "nngp", "check_activation"]

#: Activations with closed-form normalised duals.
ACTIVATIONS = ("relu", "leaky_relu")


def check_activation(activation: str, negative_slope: float = 0.01) -> float:
    """Validate an activation name; return the negative slope it implies (0 for ReLU)."""
    if activation == "relu":
        return 0.0
    if activation in ("leaky_relu", "leakyrelu"):
        if not (0.0 <= negative_slope < 1.0):
            raise ValueError(f"negative_slope must lie in [0, 1), got {negative_slope}")
        return float(negative_slope)
    raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")


def _ops(x: Any):
    """Return (module, clamped array) for numpy or torch inputs."""
    if isinstance(x, torch.Tensor):
        return torch, x.clamp(-1.0, 1.0)
    arr = np.asarray(x, dtype=np.result_type(np.asarray(x).dtype, np.float32))
    return np, np.clip(arr, -1.0, 1.0)


def relu_duals(rho: Any, negative_slope: float = 0.0) -> Tuple[Any, Any]:
    """Normalised duals (φ̌(ρ), φ̌′(ρ)) of c·LeakyReLU(negative_slope) at correlation ρ.

    ``rho`` is any-shaped numpy array or torch tensor (values clamped to [-1, 1] so round-off
    just outside the interval is safe); the outputs have its shape and kind.
    """
    xp, r = _ops(rho)
    if xp is torch:
        return _relu_duals_torch(r, float(negative_slope))
    theta = np.arccos(r)
    sin = np.sqrt(np.clip(1.0 - r * r, 0.0, None))
    k1 = (sin + r * (math.pi - theta)) / math.pi
    k0 = (math.pi - theta) / math.pi
    a = float(negative_slope)
    if a == 0.0:
        return k1, k0
    scale = 1.0 + a * a
    return ((1 - a) ** 2 * k1 + 2 * a * r) / scale, ((1 - a) ** 2 * k0 + 2 * a) / scale


def _relu_duals_torch(r: torch.Tensor, a: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Torch path of ``relu_duals`` on a clamped ρ: two allocations, the rest in place.

    A kernel tile is bound by these elementwise passes, not by its GEMM (docs/benchmarks.md), so
    each saved temporary of tile size matters.
    """
    k0 = torch.arccos(r).mul_(-1.0 / math.pi).add_(1.0)  # (π − θ)/π
    k1 = torch.mul(r, r).neg_().add_(1.0).clamp_min_(0.0).sqrt_().mul_(1.0 / math.pi).addcmul_(r, k0)
    if a == 0.0:
        return k1, k0
    scale = 1.0 + a * a
    k1.mul_((1 - a) ** 2 / scale).add_(r, alpha=2 * a / scale)
    k0.mul_((1 - a) ** 2 / scale).add_(2 * a / scale)
    return k1, k0


def dual(rho: Any, activation: str = "relu", negative_slope: float = 0.01) -> Any:
    """Normalised dual activation φ̌(ρ) (φ̌(1) = 1)."""
    return relu_duals(rho, check_activation(activation, negative_slope))[0]


def dual_derivative(rho: Any, activation: str = "relu", negative_slope: float = 0.01) -> Any:
    """Derivative dual φ̌′(ρ) of the normalised activation."""
    return relu_duals(rho, check_activation(activation, negative_slope))[1]


def _check_depth(depth: Any) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth (number of hidden layers) must be an integer >= 1, got {depth!r}")
    return int(depth)


def _recursion(rho: Any, depth: int, activation: str, negative_slope: float) -> Tuple[Any, Any]:
    depth = _check_depth(depth)
    slope = check_activation(activation, negative_slope)
    xp, sigma = _ops(rho)
    # In place on torch tensors we own (the clamped copy and the duals), unless autograd needs them.
    if xp is torch and not (torch.is_grad_enabled() and sigma.requires_grad):
        return _recursion_inplace(sigma, depth, slope)
    theta = sigma
    for _ in range(depth):
        s_next, s_dot = relu_duals(sigma, slope)
        theta, sigma = s_next + theta * s_dot, s_next
    return sigma, theta


def _recursion_inplace(sigma: torch.Tensor, depth: int, slope: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(Σ^depth, Θ^depth) from a clamped ρ that is overwritten (it becomes Θ): two allocations a layer."""
    theta = sigma
    for layer in range(depth):
        s_next, s_dot = _relu_duals_torch(sigma, slope)
        theta = theta.mul_(s_dot).add_(s_next)
        # Σ(1) = 1 comes out 1 ± an ulp; the next layer's arccos needs it inside [-1, 1]
        sigma = s_next.clamp_(-1.0, 1.0) if layer + 1 < depth else s_next
    return sigma, theta


def ntk_(rho: torch.Tensor, depth: int, negative_slope: float = 0.0) -> torch.Tensor:
    """κ_depth(ρ) computed in place: ``rho`` (a torch tensor already clamped to [-1, 1], owned by the
    caller and not needed afterwards) is overwritten and returned. ``negative_slope`` 0 is ReLU.

    The operators' tile path: it skips :func:`ntk`'s clamped copy and its argument checks.
    """
    return _recursion_inplace(rho, depth, negative_slope)[1]


def ntk(rho: Any, depth: int = 1, activation: str = "relu", negative_slope: float = 0.01) -> Any:
    """Matrix-completion NTK κ_depth(ρ) of Theorem 1.

    Parameters
    ----------
    rho : array_like or torch.Tensor, any shape
        Inner products z_jᵀ z_j' of unit-norm prior columns, in [-1, 1].
    depth : int
        Number of hidden layers d ≥ 1.
    activation : {"relu", "leaky_relu"}
    negative_slope : float
        Slope of LeakyReLU on the negative axis (ignored for ReLU).

    Returns
    -------
    Same shape and kind (numpy / torch) as ``rho``; κ_depth(1) = depth + 1.
    """
    return _recursion(rho, depth, activation, negative_slope)[1]


def nngp(rho: Any, depth: int = 1, activation: str = "relu", negative_slope: float = 0.01) -> Any:
    """NNGP (conjugate) kernel Σ^depth(ρ) of the same network; Σ^depth(1) = 1."""
    return _recursion(rho, depth, activation, negative_slope)[0]
