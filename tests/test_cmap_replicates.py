"""Replicates and aggregation (docs/cmap.md): kernel ridge regression on replicate columns vs on the
distinct (cell, drug) pairs, with the library's NTK over a one-hot prior, in float64.

P (n × U) assigns replicate columns to pairs, c = Pᵀ1 the counts, ȳ = D⁻¹Pᵀy the pair means.
Identical inputs (no nugget): K_rep = P K_u Pᵀ and Pᵀ(P K_u Pᵀ + λI)⁻¹ = (D K_u + λI)⁻¹Pᵀ, so the
pair coefficients β = Pᵀα = (K_u + λ D⁻¹)⁻¹ ȳ and every prediction k_u(x)ᵀβ are those of weighted
KRR on the means; as λ → 0, β → K_u⁻¹ ȳ (interpolation of the means). A per-column nugget τ makes
replicates distinct inputs: K_rep = P K̃ Pᵀ + δI with K̃ = K_u − δI, δ = κ(1) − κ(‖z‖²/(‖z‖²+τ²)),
i.e. an extra ridge δ per replicate, δ/c_u per pair — not the regression on the means.

The library's kernel of two distinct columns with identical features is κ(1 − ~1 ulp), not κ(1)
(only a column's own entry is pinned to ρ = 1), and κ's infinite slope at ρ = 1 turns that into
~1e-8: the identities are checked on K_rep = P K_u Pᵀ built from the distinct-pair kernel, and the
library's own replicate-column kernel is checked against it at that level.
"""
import numpy as np
import pytest

from bigntk.operators import ntk_operator
from bigntk.priors.cmap import one_hot_prior


@pytest.fixture(scope="module")
def data():
    """9 training pairs with 1-4 replicates each (3 outputs), 4 unseen query pairs."""
    rng = np.random.default_rng(0)
    grid = [(c, d) for c in range(3) for d in range(5)]
    order = rng.permutation(len(grid))
    train = [grid[i] for i in order[:9]]
    query = [grid[i] for i in order[9:13]]
    counts = np.array([1, 2, 4, 1, 3, 2, 1, 4, 2])
    pair_of = np.repeat(np.arange(9), counts)
    means = rng.standard_normal((9, 3))
    y = means[pair_of] + 0.3 * rng.standard_normal((pair_of.size, 3))
    return np.array(train), np.array(query), counts, pair_of, y


def _kernel(cols: np.ndarray, nugget: float) -> np.ndarray:
    """Dense float64 NTK (depth 1, ReLU) of the one-hot (cell, drug) prior over ``cols`` (m, 2)."""
    op = ntk_operator(one_hot_prior(cols[:, 0], cols[:, 1], nugget=nugget), dtype="float64", device="cpu")
    return op.to_dense().numpy()


def _replicate_and_pair_kernels(data, nugget):
    train, query, counts, pair_of, y = data
    n, U = pair_of.size, len(train)
    K = _kernel(np.concatenate([train[pair_of], query]), nugget)  # replicate columns, then queries
    Ku = _kernel(np.concatenate([train, query]), nugget)  # distinct pairs, then queries
    return K[:n, :n], K[n:, :n], Ku[:U, :U], Ku[U:, :U]


def _pair_means(counts, pair_of, y):
    return np.stack([y[pair_of == u].mean(0) for u in range(counts.size)])


@pytest.mark.parametrize("lam", [1e-3, 1.0])
def test_replicates_reduce_to_weighted_krr_on_pairs(data, lam):
    train, query, counts, pair_of, y = data
    K_lib, _, Ku, Kqu = _replicate_and_pair_kernels(data, nugget=0.0)
    P = np.eye(counts.size)[pair_of]
    K, Kq = P @ Ku @ P.T, Kqu @ P.T  # identical inputs, identical kernel entries
    np.testing.assert_allclose(K_lib, K, rtol=0, atol=2e-8)  # κ(1 − ulp) vs κ(1), see the docstring
    alpha = np.linalg.solve(K + lam * np.eye(K.shape[0]), y)  # replicate-level KRR
    beta = np.linalg.solve(Ku + lam * np.diag(1.0 / counts), _pair_means(counts, pair_of, y))
    np.testing.assert_allclose(P.T @ alpha, beta, rtol=0, atol=1e-8)  # α_u = Σ of the replicates' α
    np.testing.assert_allclose(Kq @ alpha, Kqu @ beta, rtol=0, atol=1e-8)  # predictions at unseen pairs


def test_ridgeless_limit_is_regression_on_pair_means(data):
    train, query, counts, pair_of, y = data
    _, _, Ku, Kqu = _replicate_and_pair_kernels(data, nugget=0.0)
    P = np.eye(counts.size)[pair_of]
    K, Kq = P @ Ku @ P.T, Kqu @ P.T
    assert np.linalg.eigvalsh(Ku).min() > 0.1  # distinct one-hot pairs: K_u positive definite
    pred_means = Kqu @ np.linalg.solve(Ku, _pair_means(counts, pair_of, y))
    pred_pinv = Kq @ (np.linalg.pinv(K, rcond=1e-10, hermitian=True) @ y)  # min-norm least squares, λ = 0
    np.testing.assert_allclose(pred_pinv, pred_means, rtol=0, atol=1e-8)
    errs = [np.abs(Kq @ np.linalg.solve(K + lam * np.eye(K.shape[0]), y) - pred_means).max()
            for lam in (1e-2, 1e-4, 1e-6)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-5  # the ridge path converges to it, O(λ)


def test_per_column_nugget_is_a_per_replicate_ridge(data):
    train, query, counts, pair_of, y = data
    K, Kq, Ku, Kqu = _replicate_and_pair_kernels(data, nugget=1.5)
    j, k = np.nonzero(pair_of == 1)[0][:2]  # two replicates of pair 1
    delta = K[j, j] - K[j, k]
    assert delta > 0.1
    P = np.eye(counts.size)[pair_of]
    Kt = Ku - delta * np.eye(counts.size)
    np.testing.assert_allclose(K, P @ Kt @ P.T + delta * np.eye(K.shape[0]), rtol=0, atol=1e-12)
    alpha = np.linalg.solve(K, y)  # replicate-level, ridge 0 (the nugget makes K positive definite)
    ybar = _pair_means(counts, pair_of, y)
    beta = np.linalg.solve(Kt + delta * np.diag(1.0 / counts), ybar)
    np.testing.assert_allclose(Kq @ alpha, Kqu @ beta, rtol=0, atol=1e-8)
    on_means = Kqu @ np.linalg.solve(Ku, ybar)  # what aggregate-then-regress computes
    assert np.abs(Kq @ alpha - on_means).max() > 1e-3  # differs: counts are unequal
    ones = np.linalg.solve(Kt + delta * np.eye(counts.size), ybar)  # equal when every count is 1
    np.testing.assert_allclose(Kqu @ ones, on_means, rtol=0, atol=1e-10)
