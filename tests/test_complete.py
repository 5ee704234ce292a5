"""End-to-end NTK completion: semantics, batching of observed sets, validation, the estimator."""

import numpy as np
import pytest

import bigntk
from bigntk import priors as P
from bigntk.kernels import ntk
from bigntk.solvers.direct import NotPositiveDefiniteError


def drug_like(m=40, n=300, p=12, seed=0):
    """Rows share one smooth function of the column features: Y = relu(W Z)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((p, n))
    Y = np.maximum(rng.standard_normal((m, p)) @ Z, 0) + 0.1 * rng.standard_normal((m, 1))
    return Y, Z


def reference_row(y, obs, Z, ridge=0.0, depth=1):
    """Row-by-row kernel regression written out with numpy (the definition)."""
    Zn = Z / np.linalg.norm(Z, axis=0)
    G = Zn.T @ Zn
    np.fill_diagonal(G, 1.0)  # unit columns: ρ_jj = 1 exactly (rounding there is amplified by κ's slope)
    K = ntk(G, depth)
    S = np.flatnonzero(obs)
    a = np.linalg.solve(K[np.ix_(S, S)] + ridge * np.eye(S.size), y[S])
    return K[:, S] @ a


def test_whole_columns_missing_matches_definition_and_beats_mean():
    Y, Z = drug_like()
    mask = np.zeros_like(Y, bool)
    mask[:, np.random.default_rng(1).permutation(Y.shape[1])[:200]] = True
    Yh = bigntk.complete(np.where(mask, Y, np.nan), mask, Z, ridge=1e-3, dtype="float64")
    np.testing.assert_array_equal(Yh[mask], Y[mask])
    ref = reference_row(Y[3], mask[3], Z, ridge=1e-3)
    np.testing.assert_allclose(Yh[3, ~mask[3]], ref[~mask[3]], rtol=1e-8, atol=1e-8)
    miss = ~mask
    err_ntk = np.mean((Yh - Y)[miss] ** 2)
    row_mean = np.nanmean(np.where(mask, Y, np.nan), axis=1, keepdims=True)
    err_mean = np.mean((np.broadcast_to(row_mean, Y.shape) - Y)[miss] ** 2)
    assert err_ntk < 0.3 * err_mean


def test_rows_with_distinct_observed_sets_are_each_solved_exactly():
    Y, Z = drug_like(m=12, n=60, seed=2)
    rng = np.random.default_rng(3)
    mask = rng.random(Y.shape) < 0.5
    mask[0] = mask[1]  # two rows share a set
    est = bigntk.NTKCompleter(Z, ridge=1e-2, dtype="float64", progress=False).fit(Y, mask)
    assert est.n_patterns_ == 11
    Yh = est.transform()
    for i in (0, 1, 5, 11):
        ref = reference_row(Y[i], mask[i], Z, ridge=1e-2)
        np.testing.assert_allclose(Yh[i, ~mask[i]], ref[~mask[i]], rtol=1e-7, atol=1e-8)


def test_float32_default_close_to_float64():
    Y, Z = drug_like(seed=4)
    mask = np.random.default_rng(5).random(Y.shape) < 0.6
    Y32 = bigntk.complete(Y, mask, Z, ridge=1e-2, progress=False)
    Y64 = bigntk.complete(Y, mask, Z, ridge=1e-2, dtype="float64", progress=False)
    assert np.abs(Y32 - Y64).max() < 1e-3 * np.abs(Y64).max()


def test_empty_rows_get_zero_with_warning_and_predict_columns():
    Y, Z = drug_like(m=5, n=50)
    mask = np.random.default_rng(6).random(Y.shape) < 0.5
    mask[2] = False
    with pytest.warns(UserWarning, match="1 row"):
        est = bigntk.NTKCompleter(Z, ridge=1e-3).fit(Y, mask)
    out = est.transform()
    assert np.all(out[2] == 0)
    np.testing.assert_allclose(est.predict(columns=[3, 7]), est.predict()[:, [3, 7]], rtol=1e-5, atol=1e-6)


def test_group_prior_needs_nugget_and_nugget_fixes_it():
    Y = np.random.default_rng(7).random((3, 8))
    mask = np.ones_like(Y, bool); mask[:, 0] = False
    prior = P.one_hot([0, 0, 1, 1, 0, 1, 0, 1])
    with pytest.raises(NotPositiveDefiniteError, match="nugget"):
        bigntk.complete(Y, mask, prior)
    out = bigntk.complete(Y, mask, prior, nugget=1.5)
    # column 0 is in group 0: its prediction is close to the group's mean, not 0
    assert abs(out[0, 0] - Y[0, [1, 4, 6]].mean()) < abs(Y[0, [1, 4, 6]].mean())


@pytest.mark.parametrize("kwargs,match", [
    (dict(Y=np.ones(5)), "2-D"),
    (dict(mask=np.ones((4, 6))), "boolean"),
    (dict(mask=np.ones((4, 5), bool)), "shape"),
    (dict(prior=np.ones((3, 7))), "columns"),
    (dict(ridge=-1.0), "ridge"),
    (dict(depth=0), "depth"),
    (dict(activation="gelu"), "activation"),
    (dict(solver="magic"), "solver"),
])
def test_validation(kwargs, match):
    args = dict(Y=np.ones((4, 6)), mask=np.ones((4, 6), bool), prior=np.random.rand(3, 6))
    args.update(kwargs)
    Y, mask, prior = args.pop("Y"), args.pop("mask"), args.pop("prior")
    with pytest.raises(ValueError, match=match):
        bigntk.complete(Y, mask, prior, **args)


def test_nan_in_observed_entry_is_rejected_but_allowed_elsewhere():
    Y = np.ones((2, 4)); Y[0, 1] = np.nan
    mask = np.ones_like(Y, bool)
    with pytest.raises(ValueError, match="NaN"):
        bigntk.complete(Y, mask, np.random.rand(3, 4))
    mask[0, 1] = False
    out = bigntk.complete(Y, mask, np.random.rand(3, 4), ridge=1e-3)
    assert np.isfinite(out).all()


def test_not_fitted():
    with pytest.raises(RuntimeError, match="fit"):
        bigntk.NTKCompleter(np.ones((2, 2))).predict()


@pytest.mark.parametrize("options", [{}, {"preconditioner": None}])
def test_cg_in_float32_solves_like_the_float64_direct_solve(options):
    # float32 products broke the deflated CG (it diverged, or returned 1e25 without a preconditioner):
    # CG now iterates with float64 products and uses the float32 operator for its sketch only
    Y, Z = drug_like(m=30, n=400, seed=8)
    mask = np.zeros_like(Y, bool)
    mask[:, np.random.default_rng(9).permutation(400)[:250]] = True
    ref = bigntk.complete(Y, mask, Z, ridge=1e-3, dtype="float64", progress=False)
    out = bigntk.complete(Y, mask, Z, ridge=1e-3, solver="cg", progress=False, **options)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_unconverged_cg_says_so():
    from bigntk.solvers import ConvergenceWarning

    Y, Z = drug_like(m=4, n=300, seed=10)
    with pytest.warns(ConvergenceWarning, match="did not reach"):
        bigntk.complete(Y, np.ones_like(Y, bool) & (np.arange(300) < 200), Z, solver="cg", max_iter=2, progress=False)
    with pytest.raises(ValueError, match="max_iter"):
        bigntk.complete(Y, np.ones_like(Y, bool), Z, solver="cg", max_iter=0, progress=False)
    with pytest.raises(ValueError, match="unknown option"):
        bigntk.complete(Y, np.ones_like(Y, bool), Z, solver="eigenpro", epochz=3, progress=False)
