"""Feature priors: normalised Gram blocks, the implicit nugget, factorised concatenations."""
import numpy as np
import pytest
import torch

from bigntk import priors as P


def normalised_gram(Z):
    Zn = Z / np.linalg.norm(Z, axis=0)
    return Zn.T @ Zn


def test_explicit_prior_gram_is_normalised():
    Z = np.random.default_rng(0).standard_normal((5, 9))
    g = P.ExplicitPrior(Z).gram().numpy()
    np.testing.assert_allclose(g, normalised_gram(Z), atol=1e-12)
    np.testing.assert_allclose(np.diag(g), 1.0)


def test_nugget_equals_appending_scaled_identity():
    """The paper's code appends 1.5·I before normalising; the nugget must give exactly that."""
    Z = np.random.default_rng(1).random((4, 7))
    appended = np.vstack([Z, 1.5 * np.eye(7)])
    g = P.ExplicitPrior(Z).with_nugget(1.5)
    np.testing.assert_allclose(g.gram().numpy(), normalised_gram(appended), atol=1e-12)
    # blocks away from the diagonal see τ² only in the norms
    np.testing.assert_allclose(g.gram([0, 1], [2, 3, 4]).numpy(), normalised_gram(appended)[:2, 2:5], atol=1e-12)


def test_factorised_concat_matches_explicit_features_and_exposes_factors():
    rng = np.random.default_rng(2)
    cells = rng.integers(0, 3, size=12)
    drugs = rng.integers(0, 5, size=12)
    cell_means, drug_refs = rng.random((6, 3)), rng.random((6, 5))
    prior = P.concat([P.EmbeddingPrior(cells, cell_means), P.EmbeddingPrior(drugs, drug_refs)],
                     weights=[0.75, 1.0], nugget=1.5)
    Z = np.vstack([0.75 * cell_means[:, cells], drug_refs[:, drugs], 1.5 * np.eye(12)])
    np.testing.assert_allclose(prior.gram().numpy(), normalised_gram(Z), atol=1e-12)
    factors = prior.factors()
    assert [f.weight for f in factors] == [0.75, 1.0]
    assert factors[0].gram.shape == (3, 3) and factors[1].gram.shape == (5, 5)
    raw = sum(f.weight**2 * f.gram[f.labels][:, f.labels] for f in factors)
    np.testing.assert_allclose(raw.numpy(), prior.raw_gram().numpy(), atol=1e-12)


def test_one_hot_and_explicit_concat_is_not_factorised():
    lab = np.array([0, 1, 0, 2])
    oh = P.one_hot(lab)
    np.testing.assert_array_equal(oh.gram().numpy(), (lab[:, None] == lab[None, :]).astype(float))
    mixed = P.concat([oh, P.ExplicitPrior(np.ones((2, 4)))])
    assert mixed.factors() is None
    assert oh.factors() is not None


def test_zero_column_needs_nugget():
    Z = np.zeros((3, 4)); Z[0, 0] = 1
    with pytest.raises(ValueError, match="nugget"):
        P.ExplicitPrior(Z).gram()
    assert np.isfinite(P.ExplicitPrior(Z).with_nugget(0.5).gram().numpy()).all()


def test_image_priors_and_from_imputation():
    m = P.meshgrid((4, 6))
    assert m.n == 24 and m.Z.shape == (3, 24)
    u1, u2 = P.uniform(8, 10, seed=3), P.uniform(8, 10, seed=3)
    np.testing.assert_array_equal(u1.Z, u2.Z)
    assert float(u1.Z.max()) <= 0.1
    Yh = np.random.default_rng(4).random((5, 6))
    np.testing.assert_allclose(P.from_imputation(Yh).gram().numpy(), normalised_gram(Yh), atol=1e-12)


def test_validation_errors():
    with pytest.raises(ValueError, match="2-D"):
        P.ExplicitPrior(np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        P.ExplicitPrior(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="different numbers"):
        P.concat([P.one_hot([0, 1]), P.one_hot([0, 1, 1])])
    with pytest.raises(ValueError, match="integers"):
        P.one_hot(np.array([0.5, 1.0]))
    with pytest.raises(IndexError):
        P.one_hot([0, 1]).gram([5], None)
    with pytest.raises(ValueError, match="nugget"):
        P.one_hot([0, 1]).with_nugget(-1)


def test_as_prior_accepts_arrays_and_tensors():
    Z = torch.rand(3, 5, dtype=torch.float64)
    assert P.as_prior(Z).n == 5
    p = P.one_hot([0, 1])
    assert P.as_prior(p) is p


def test_scaled_factors_reproduce_the_sparse_regime_prior_and_feed_the_operator():
    """Column (c, d) = [w‖e_d‖m̂_c, e_d] + nugget: a scaled cell factor plus a drug factor."""
    from bigntk.priors.cmap import SparseRegimePrior
    from bigntk.kernels import ntk
    from bigntk.operators import FactorisedNTKOperator

    rng = np.random.default_rng(0)
    cell, drug = rng.integers(0, 4, 40), rng.integers(0, 9, 40)
    M = rng.random((4, 7)); M /= np.linalg.norm(M, axis=1, keepdims=True)
    E = rng.random((9, 7))
    prior = SparseRegimePrior(cell, drug, M, E, w=0.75, nugget=1.5)
    feats = np.vstack([0.75 * np.linalg.norm(E[drug], axis=1) * M[cell].T, E[drug].T, 1.5 * np.eye(40)])
    np.testing.assert_allclose(prior.gram().numpy(), normalised_gram(feats), atol=1e-12)
    f = prior.factors()
    assert f[0].scale is not None and f[0].gram.shape == (4, 4) and f[1].embedding.shape == (9, 7)
    idx = torch.arange(40)
    raw = sum(fb.block(idx, idx) for fb in f)
    np.testing.assert_allclose(raw.numpy(), prior.raw_gram().numpy(), atol=1e-12)
    op = FactorisedNTKOperator(prior, dtype="float64", device="cpu")
    np.testing.assert_allclose(op.block(idx, idx).numpy(), ntk(prior.gram()).numpy(), atol=1e-7)
    # the drug Gram kept as its embedding (tiles by GEMM, as for 20k+ drugs) gives the same kernel
    lowrank = FactorisedNTKOperator(prior, dtype="float64", device="cpu", gram_max_bytes=0)
    assert lowrank.factor_forms == ["gram", "embedding"]
    np.testing.assert_allclose(lowrank.block(idx, idx[::3]).numpy(), op.block(idx, idx[::3]).numpy(), atol=1e-12)


def test_a_drug_gram_too_large_for_float64_is_held_in_float32_for_float32_tiles():
    """Between the float32 and the float64 size of the (g, g) Gram, float32 tiles gather from a float32
    Gram (ρ is rounded to float32 before κ anyway) and agree with the float64-Gram tiles to float32
    rounding; float64 tiles keep the embedding (exact)."""
    from bigntk.priors.cmap import SparseRegimePrior
    from bigntk.operators import FactorisedNTKOperator

    rng = np.random.default_rng(1)
    cell, drug = rng.integers(0, 3, 300), rng.integers(0, 50, 300)
    M = rng.random((3, 20)); M /= np.linalg.norm(M, axis=1, keepdims=True)
    prior = SparseRegimePrior(cell, drug, M, rng.standard_normal((50, 20)), w=0.75, nugget=1.5)
    between = 50 * 50 * 6  # under the float64 Gram's 20 000 bytes, over the float32 one's 10 000
    ref = FactorisedNTKOperator(prior, dtype="float32", device="cpu")  # float64 Gram (small)
    f32 = FactorisedNTKOperator(prior, dtype="float32", device="cpu", gram_max_bytes=between)
    f64 = FactorisedNTKOperator(prior, dtype="float64", device="cpu", gram_max_bytes=between)
    assert ref.factor_forms == f32.factor_forms == ["gram", "gram"] and f64.factor_forms == ["gram", "embedding"]
    assert f32._parts[1][1].dtype == torch.float32
    rows, cols = torch.arange(0, 300, 2), torch.arange(300)
    np.testing.assert_allclose(f32.block(rows, cols).numpy(), ref.block(rows, cols).numpy(), rtol=0, atol=2e-6)
    np.testing.assert_allclose(f64.block(rows, cols).numpy(), ref.block(rows, cols).numpy(), rtol=0, atol=1e-6)
    V = torch.randn(300, 4, dtype=torch.float64)
    np.testing.assert_allclose(f32.matmul(V).numpy(), ref.matmul(V).numpy(), rtol=1e-5, atol=1e-4)
