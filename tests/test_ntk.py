"""The fully connected matrix-completion NTK (Theorem 1) against closed forms and a wide network."""
import math

import numpy as np
import pytest
import torch

from bigntk.kernels.ntk import dual, ntk, ntk_, nngp, relu_duals


def paper_kernel(rho):
    """The paper code's depth-1 ReLU kernel."""
    t = np.arccos(rho)
    return (rho * (math.pi - t) + np.sqrt(1 - rho**2)) / math.pi + rho * (math.pi - t) / math.pi


def test_depth1_relu_matches_paper_formula():
    rho = np.linspace(-1, 1, 101)
    np.testing.assert_allclose(ntk(rho), paper_kernel(rho), atol=1e-12)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_value_at_one_is_depth_plus_one(depth, activation):
    assert ntk(np.array([1.0]), depth, activation, 0.2)[0] == pytest.approx(depth + 1)
    assert nngp(np.array([1.0]), depth, activation, 0.2)[0] == pytest.approx(1.0)


def test_leaky_dual_is_normalised_and_matches_monte_carlo():
    a, rho = 0.3, 0.4
    rng = np.random.default_rng(0)
    u = rng.standard_normal(2_000_000)
    v = rho * u + math.sqrt(1 - rho**2) * rng.standard_normal(u.size)
    c2 = 2 / (1 + a * a)
    phi = lambda x: np.where(x > 0, x, a * x)
    dphi = lambda x: np.where(x > 0, 1.0, a)
    k, kd = relu_duals(np.array(rho), a)
    assert float(k) == pytest.approx(c2 * np.mean(phi(u) * phi(v)), abs=3e-3)
    assert float(kd) == pytest.approx(c2 * np.mean(dphi(u) * dphi(v)), abs=3e-3)
    assert float(dual(np.array(1.0), "leaky_relu", a)) == pytest.approx(1.0)


def test_torch_in_torch_out_and_stable_at_endpoints():
    rho = torch.tensor([-1.0, -1.0 - 1e-7, 1.0 + 1e-7, 1.0], dtype=torch.float32)
    out = ntk(rho, depth=3)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out[-1].item() == pytest.approx(4.0)
    assert isinstance(ntk(np.array([0.5])), np.ndarray)


def test_kernel_is_increasing_on_nonnegative_rho():
    # a power series in ρ with non-negative coefficients: increasing on [0, 1]
    rho = np.linspace(0, 1, 201)
    for d in (1, 3):
        assert np.all(np.diff(ntk(rho, d)) > 0)


@pytest.mark.parametrize("bad", [dict(depth=0), dict(depth=1.5), dict(activation="tanh"),
                                 dict(activation="leaky_relu", negative_slope=1.5)])
def test_invalid_arguments(bad):
    with pytest.raises(ValueError):
        ntk(np.array([0.1]), **bad)


def empirical_ntk(Z, depth, width, slope, seed):
    """Empirical NTK of f_Z(W) = W_d C φ(… C φ(W_1 Z)) (paper Eq. 3, NTK parametrisation).

    Returns the Gram of parameter gradients for outputs (i, j) with i ∈ {0, 1}, j ∈ columns of Z,
    ordered (i, j) row-major.
    """
    g = torch.Generator().manual_seed(seed)
    p, n = Z.shape
    c = math.sqrt(2 / (1 + slope**2))
    sizes = [p] + [width] * depth + [2]
    Ws = [torch.randn(sizes[l + 1], sizes[l], generator=g, dtype=torch.float64, requires_grad=True)
          for l in range(depth + 1)]
    h = torch.as_tensor(Z, dtype=torch.float64)
    for l, W in enumerate(Ws):
        # unit-norm columns z_j: the first layer needs no 1/√p (pre-activations have variance 1)
        h = W @ h / (math.sqrt(sizes[l]) if l else 1.0)
        if l < depth:
            h = c * torch.nn.functional.leaky_relu(h, slope)
    outs = h.reshape(-1)  # (2 * n,)
    J = torch.stack([torch.cat([gr.reshape(-1) for gr in torch.autograd.grad(o, Ws, retain_graph=True)])
                     for o in outs])
    return (J @ J.T).detach().numpy()


@pytest.mark.parametrize("depth,slope", [(1, 0.0), (2, 0.0), (1, 0.2)])
def test_matches_wide_network_empirical_ntk(depth, slope):
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((6, 4))
    Z /= np.linalg.norm(Z, axis=0)
    width = 3000 if depth == 1 else 1500
    K_emp = np.mean([empirical_ntk(Z, depth, width, slope, s) for s in range(2)], axis=0)
    act = "relu" if slope == 0 else "leaky_relu"
    kappa = ntk(Z.T @ Z, depth, act, slope)
    n = Z.shape[1]
    same_row = K_emp[:n, :n], K_emp[n:, n:]
    for block in same_row:
        np.testing.assert_allclose(block, kappa, atol=0.08 * (depth + 1))
    # entries of different rows are uncorrelated: the kernel between them is 0 in the limit
    assert np.abs(K_emp[:n, n:]).max() < 0.08 * (depth + 1)
    assert np.abs(kappa).max() > 0.5  # the comparison is not vacuous


@pytest.mark.parametrize("depth,slope", [(1, 0.0), (2, 0.0), (4, 0.1)])
def test_in_place_kernel_equals_ntk(depth, slope):
    rho = torch.linspace(-1.0, 1.0, 2001, dtype=torch.float32)
    act = "leaky_relu" if slope else "relu"
    ref = ntk(rho, depth, act, slope)
    out = ntk_(rho.clone(), depth, slope)
    assert torch.equal(out, ref) and torch.isfinite(out).all()
