"""Kernel operators and the Dask block builder: tiles and streamed products against dense references."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bigntk.blocks import iter_tiles, kernel_tiles, matmul_graph, tile_plan
from bigntk.kernels.ntk import ntk
from bigntk.operators import (CNTKOperator, DenseOperator, FactorisedNTKOperator, NTKOperator, PolyphaseCNTKOperator,
                              tile_shape)
from bigntk.priors import EmbeddingPrior, ExplicitPrior, concat

SMALL_BUDGET = 40_000  # bytes: forces many row and column tiles on tiny problems


def _psd(n, seed=0):
    A = np.random.default_rng(seed).standard_normal((n, n // 2))
    return A @ A.T / n + 0.1 * np.eye(n)


def test_dense_operator_blocks_and_streamed_matmul():
    K = _psd(150)
    op = DenseOperator(K, device="cpu", dtype="float64", memory_budget=SMALL_BUDGET)
    rows, cols = np.array([5, 0, 149, 7]), np.arange(10, 60)
    np.testing.assert_array_equal(op.block(rows, cols).numpy(), K[np.ix_(rows, cols)])
    np.testing.assert_allclose(op.diag().numpy(), np.diag(K))
    V = np.random.default_rng(1).standard_normal((150, 3))
    np.testing.assert_allclose(op.matmul(V).numpy(), K @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.matmul(V[cols], rows=rows, cols=cols).numpy(), K[np.ix_(rows, cols)] @ V[cols],
                               rtol=1e-12, atol=1e-12)
    assert op.matmul(V[:, 0]).shape == (150,)
    sub = op.restrict(cols)
    np.testing.assert_allclose(sub.to_dense().numpy(), K[np.ix_(cols, cols)])
    with pytest.raises(ValueError, match="rows"):
        op.matmul(V[:10])
    with pytest.raises(IndexError):
        op.block([150], [0])
    with pytest.raises(ValueError, match="square"):
        DenseOperator(np.zeros((3, 4)))


def test_tile_shape_follows_budget():
    small = tile_shape(10_000, 10_000, 1, 1 << 20)
    large = tile_shape(10_000, 10_000, 1, 1 << 30)
    assert small[0] * small[1] < large[0] * large[1]
    assert small[0] * small[1] * 16 <= (1 << 20) * 1.01 or small[0] == 1


@pytest.mark.parametrize("nugget", [0.0, 0.7])
def test_ntk_operator_equals_kernel_of_prior_gram(nugget):
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((6, 120))
    prior = ExplicitPrior(Z).with_nugget(nugget)
    op = NTKOperator(prior, depth=2, device="cpu", dtype="float64", memory_budget=SMALL_BUDGET)
    sq = (Z * Z).sum(0) + nugget**2
    rho = (Z.T @ Z + nugget**2 * np.eye(120)) / np.sqrt(np.outer(sq, sq))
    K = ntk(np.clip(rho, -1, 1), depth=2)
    np.testing.assert_allclose(op.to_dense().numpy(), K, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(op.diag().numpy(), 3.0)  # κ_2(1) = depth + 1
    V = rng.standard_normal((120, 2))
    np.testing.assert_allclose(op.matmul(V).numpy(), K @ V, rtol=1e-6, atol=1e-6)


def test_factorised_operator_equals_explicit_prior_operator():
    rng = np.random.default_rng(3)
    n, cells, drugs = 300, 7, 25
    cell_lab, drug_lab = rng.integers(0, cells, n), rng.integers(0, drugs, n)
    E_cell, E_drug = rng.standard_normal((5, cells)), rng.standard_normal((9, drugs))
    prior = concat([EmbeddingPrior(cell_lab, E_cell), EmbeddingPrior(drug_lab, E_drug)], weights=[1.0, 0.5],
                   nugget=1.5)
    assert prior.factors() is not None
    Z = np.vstack([E_cell[:, cell_lab], 0.5 * E_drug[:, drug_lab]])  # explicit features of the same prior
    kw = dict(depth=1, activation="leaky_relu", negative_slope=0.1, device="cpu", dtype="float64",
              memory_budget=SMALL_BUDGET)
    fac = FactorisedNTKOperator(prior, **kw)
    exp = NTKOperator(ExplicitPrior(Z).with_nugget(1.5), **kw)
    rows, cols = rng.permutation(n)[:80], rng.permutation(n)[:90]
    # duplicate (cell, drug) pairs have ρ = 1 up to round-off, which κ's arccos amplifies to ~√eps
    np.testing.assert_allclose(fac.block(rows, cols).numpy(), exp.block(rows, cols).numpy(), rtol=1e-7, atol=1e-7)
    V = rng.standard_normal((n, 4))
    np.testing.assert_allclose(fac.matmul(V).numpy(), exp.matmul(V).numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="explicit"):
        FactorisedNTKOperator(ExplicitPrior(Z))


@pytest.mark.parametrize("factorised", [False, True])
def test_cpu_row_strips_give_the_tile_bitwise(monkeypatch, factorised):
    """A tile computed in cache-sized row strips equals the same tile taken whole, bit for bit."""
    import bigntk.operators.ntk as ntk_ops

    rng = np.random.default_rng(5)
    n = 400
    if factorised:
        prior = concat([EmbeddingPrior(rng.integers(0, 9, n), rng.standard_normal((4, 9))),
                        EmbeddingPrior(rng.integers(0, 30, n), rng.standard_normal((6, 30)))], nugget=0.3)
    else:
        prior = ExplicitPrior(rng.standard_normal((8, n)))
    op = ntk_ops.ntk_operator(prior, depth=3, activation="leaky_relu", negative_slope=0.2, device="cpu",
                              dtype="float32")
    rows, cols = rng.permutation(n)[:300], rng.permutation(n)[:350]
    whole = op.block(rows, cols)
    monkeypatch.setattr(ntk_ops, "CPU_STRIP_ENTRIES", 1000)  # strips of 2 rows
    strips = op.block(rows, cols)
    assert torch.equal(strips, whole)
    shared = np.isin(rows, cols).sum()
    assert shared > 0 and int((strips == 4.0).sum()) >= shared  # κ_3(1) = 4 exactly where a row is a column
    repeated = np.r_[cols[:20], cols[:20]]  # columns taken twice
    assert torch.equal(op.block(rows, repeated), torch.cat([whole[:, :20], whole[:, :20]], 1))


@pytest.mark.parametrize("budget", [SMALL_BUDGET, 1 << 26])
def test_matmul_with_columns_reads_the_kept_block_off_the_product_tiles(budget):
    rng = np.random.default_rng(6)
    op = NTKOperator(rng.standard_normal((5, 900)), device="cpu", dtype="float32", memory_budget=budget)
    sub = op.restrict(rng.permutation(900)[:700])  # through a SubOperator, as EigenPro sees it
    rows, cols = rng.permutation(700)[:50], rng.permutation(700)[:600]
    keep = np.sort(rng.permutation(600)[:77])
    V = rng.standard_normal((600, 3))
    out, kept = sub.matmul_with_columns(V, rows, cols, torch.as_tensor(keep))
    torch.testing.assert_close(out, sub.matmul(V, rows, cols), rtol=1e-5, atol=1e-5)
    assert torch.equal(kept, sub.block(rows, cols[keep]))
    with pytest.raises(ValueError, match="ascending"):
        sub.matmul_with_columns(V, rows, cols, torch.as_tensor(keep[::-1].copy()))


def _brute_window_kernel(window, c_far, H, W):
    """K[(i, j), (k, l)] straight from the definition, with Python loops (tiny grids only)."""
    P = window.shape[0]
    K = np.full((H * W, H * W), c_far)
    for i in range(H):
        for j in range(W):
            for k in range(H):
                for l in range(W):
                    va = (k - i + H // 2) % H - H // 2
                    vb = (l - j + W // 2) % W - W // 2
                    if abs(va) <= P - 1 and abs(vb) <= P - 1:
                        K[i * W + j, k * W + l] += window[i % P, j % P, va + P - 1, vb + P - 1]
    return K


@pytest.mark.parametrize("P,H,W", [(2, 4, 6), (4, 8, 12)])
def test_polyphase_operator_matches_definition(P, H, W):
    rng = np.random.default_rng(P)
    window = rng.standard_normal((P, P, 2 * P - 1, 2 * P - 1))
    mask = rng.random((H, W)) < 0.7
    K = _brute_window_kernel(window, 0.37, H, W)
    obs = np.flatnonzero(mask)
    op = PolyphaseCNTKOperator(window, 0.37, (H, W), mask, device="cpu", dtype="float64")
    np.testing.assert_allclose(op.to_dense().numpy(), K[np.ix_(obs, obs)], atol=1e-12)
    V = rng.standard_normal((len(obs), 3))  # e.g. RGB as three right-hand sides
    np.testing.assert_allclose(op.matmul(V).numpy(), K[np.ix_(obs, obs)] @ V, atol=1e-10)
    np.testing.assert_allclose(op.diag().numpy(), np.diag(K)[obs])
    # float32 GEMM, far-field constant added last in float64
    op32 = PolyphaseCNTKOperator(window, 0.37, (H, W), mask, device="cpu", dtype="float32")
    np.testing.assert_allclose(op32.matmul(V).numpy(), K[np.ix_(obs, obs)] @ V, rtol=1e-4, atol=1e-4)


def test_polyphase_operator_rejects_bad_shapes():
    with pytest.raises(ValueError, match="window"):
        PolyphaseCNTKOperator(np.zeros((2, 2, 2, 2)), 0.0, (4, 4))
    with pytest.raises(ValueError, match="multiples"):
        PolyphaseCNTKOperator(np.zeros((4, 4, 7, 7)), 0.0, (6, 8))


def test_polyphase_matches_compact_cntk():
    cntk = pytest.importorskip("bigntk.kernels.cntk")
    _check_against_compact_cntk(cntk)


def window_operator_and_dense(cntk, levels=2, shape=(16, 16), seed=0, observed_fraction=0.8, dtype="float64"):
    """(PolyphaseCNTKOperator over observed pixels, dense (H·W, H·W) numpy kernel, observed flat indices)."""
    arch = cntk.dip(levels)
    win = cntk.compact_kernel(arch, shape, form="window", dtype="float64", device="cpu")
    full = cntk.compact_kernel(arch, shape, form="full", dtype="float64", device="cpu")
    K = full.to_dense().numpy()
    mask = np.random.default_rng(seed).random(shape) < observed_fraction
    op = PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype=dtype)
    ref = CNTKOperator(full, mask, device="cpu", dtype="float64")
    np.testing.assert_allclose(ref.to_dense().numpy(), K[np.ix_(op.pixels.numpy(), op.pixels.numpy())])
    return op, K, op.pixels.numpy()


def _check_against_compact_cntk(cntk):
    op, K, obs = window_operator_and_dense(cntk, levels=2, shape=(16, 16), seed=0)
    np.testing.assert_allclose(op.to_dense().numpy(), K[np.ix_(obs, obs)], rtol=1e-5, atol=1e-6)
    V = np.random.default_rng(0).standard_normal((len(obs), 3))
    np.testing.assert_allclose(op.matmul(V).numpy(), K[np.ix_(obs, obs)] @ V, rtol=1e-4, atol=1e-5)


def test_dask_block_builder_matches_dense():
    K = _psd(130, seed=4)
    op = DenseOperator(K, device="cpu", dtype="float64", memory_budget=SMALL_BUDGET)
    tiles = kernel_tiles(op)
    assert len(tiles.chunks[0]) * len(tiles.chunks[1]) > 1  # several tasks, from the budget
    np.testing.assert_array_equal(tiles.compute(), K)
    rows, cols = np.arange(0, 130, 3), np.arange(1, 130, 2)
    np.testing.assert_array_equal(kernel_tiles(op, rows, cols).compute(), K[np.ix_(rows, cols)])
    V = np.random.default_rng(5).standard_normal((130, 2))
    np.testing.assert_allclose(matmul_graph(op, V).compute(), K @ V, rtol=1e-12, atol=1e-12)
    seen = np.zeros_like(K)
    for rs, cs, t in iter_tiles(op):
        seen[rs, cs] = t.numpy()
    np.testing.assert_array_equal(seen, K)
    assert tile_plan(10_000, 10_000, memory_budget=1 << 20)[0] < tile_plan(10_000, 10_000, memory_budget=1 << 28)[0]


@pytest.mark.gpu
def test_operators_cpu_cuda_parity():
    rng = np.random.default_rng(6)
    Z = rng.standard_normal((8, 400))
    V = rng.standard_normal((400, 3))
    out = [NTKOperator(Z, device=d, dtype="float64").matmul(V).cpu().numpy() for d in ("cpu", "cuda")]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-9, atol=1e-9)
    window = rng.standard_normal((4, 4, 7, 7))
    out = [PolyphaseCNTKOperator(window, 0.2, (16, 16), device=d, dtype="float64").matmul(V[:256]).cpu().numpy()
           for d in ("cpu", "cuda")]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-9, atol=1e-9)
