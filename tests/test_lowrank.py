"""lin-RFM and the low-rank baselines: recovery of small low-rank matrices, input validation,
observed / held-out entries kept, held-out stopping. Sizes are tiny (2 shared CPU cores)."""
from __future__ import annotations

import numpy as np
import pytest

from bigntk.lowrank import (
    LinRFM,
    als,
    check_inputs,
    complete_lowrank,
    gd_factorization,
    lin_rfm,
    lin_rfm_result,
    soft_impute,
    split_observed,
)


def low_rank_problem(m=40, n=30, rank=2, frac=0.6, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
    Y /= np.sqrt((Y**2).mean())
    mask = rng.random((m, n)) < frac
    return Y, mask


def test_missing_mse(Y, mask, out):
    return float(((out - Y)[~mask] ** 2).mean())


test_missing_mse.__test__ = False  # helper, not a test


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_lin_rfm_recovers_low_rank(alpha):
    Y, mask = low_rank_problem()
    res = lin_rfm_result(Y, mask, alpha=alpha, max_iter=100, dtype="float64")
    assert test_missing_mse(Y, mask, res.completed) < 1e-4
    assert res.best_iter <= res.n_iter - 1
    assert res.history[res.best_iter] == pytest.approx(min(res.history))


def test_lin_rfm_general_alpha_uses_eigendecomposition():
    Y, mask = low_rank_problem(seed=1)
    out = lin_rfm(Y, mask, alpha=0.75, max_iter=100, dtype="float64")
    assert test_missing_mse(Y, mask, out) < 1e-3


def test_lin_rfm_wide_matrix_is_transposed_and_recovered():
    Y, mask = low_rank_problem(m=25, n=45, seed=2)
    res = lin_rfm_result(Y, mask, alpha=1.0, max_iter=100)
    assert res.info["transposed"] is True
    assert res.info["metric"].shape == (25, 25)
    assert res.completed.shape == (25, 45)
    assert test_missing_mse(Y, mask, res.completed) < 1e-3


def test_lin_rfm_beats_mean_fill_and_metric_is_low_rank():
    Y, mask = low_rank_problem(seed=3)
    est = LinRFM(alpha=1.0, max_iter=100).fit(Y, mask)
    spectrum = np.linalg.eigvalsh(est.metric_)[::-1]
    assert spectrum[2] < 1e-3 * spectrum[0]  # rank-2 truth: the learned metric is ~rank 2
    assert test_missing_mse(Y, mask, est.completed_) < 1e-2 * float((Y[~mask] ** 2).mean())


def test_observed_entries_preserved_and_nan_allowed_where_missing():
    Y, mask = low_rank_problem(seed=4)
    Y_nan = Y.copy()
    Y_nan[~mask] = np.nan
    for out in (lin_rfm(Y_nan, None, max_iter=20),
                gd_factorization(Y_nan, None, rank=2, max_iter=20),
                als(Y_nan, None, rank=2, max_iter=5),
                soft_impute(Y_nan, None, max_iter=5)):
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out[mask], Y[mask])


def test_held_out_entries_restored_and_not_used_for_fitting():
    Y, mask = low_rank_problem(seed=5)
    train, val = split_observed(mask, 0.2, seed=0)
    assert val.sum() > 0 and not (train & val).any() and ((train | val) == mask).all()
    # poison the held-out entries: the iterates must not change (they are used only to judge),
    # and the output must still return them verbatim
    Y_bad = Y.copy()
    Y_bad[val] += 100.0
    last = {}
    # fixed ridge, no momentum: the held-out error then steers nothing (the default schedule and the
    # momentum restart are *meant* to depend on it)
    kw = dict(val_fraction=0.2, seed=0, max_iter=30, patience=1000, tol=0.0, reg_decay=1.0, alpha=1.0,
              reg_schedule="decay", momentum=0.0)
    for name, data in (("clean", Y), ("bad", Y_bad)):
        res = lin_rfm_result(data, mask, callback=lambda i, Yh: last.__setitem__(name, Yh.numpy().copy()),
                             **kw)
    np.testing.assert_array_equal(res.completed[val], Y_bad[val])
    np.testing.assert_allclose(last["bad"][~mask], last["clean"][~mask], rtol=0, atol=1e-6)
    assert res.val_error > 0.9  # the fit predicts the truth there, far from the poisoned values


def test_split_keeps_a_training_entry_in_every_row_and_column():
    rng = np.random.default_rng(0)
    mask = rng.random((50, 40)) < 0.05
    train, val = split_observed(mask, 0.5, seed=1)
    assert (train.any(1) == mask.any(1)).all() and (train.any(0) == mask.any(0)).all()
    assert val.sum() > 0


def test_empty_rows_and_columns_are_handled():
    Y, mask = low_rank_problem(seed=6)
    mask[3] = False
    mask[:, 7] = False
    out = lin_rfm(Y, mask, max_iter=100, alpha=1.0)
    assert np.isfinite(out).all()
    rows = np.ones(Y.shape[0], bool)
    rows[3] = False
    cols = np.ones(Y.shape[1], bool)
    cols[7] = False
    sub = np.ix_(rows, cols)
    assert test_missing_mse(Y[sub], mask[sub], out[sub]) < 1e-3
    np.testing.assert_array_equal(out[:, 7], 0.0)  # nothing known about that column


@pytest.mark.parametrize("method,kw,limit", [
    ("gd", {"rank": 2, "max_iter": 400}, 1e-6),
    ("als", {"rank": 2, "max_iter": 40}, 1e-4),
    ("softimpute", {"max_iter": 300}, 1e-3),  # vs 1.0 for a zero fill
])
def test_baselines_recover_low_rank(method, kw, limit):
    Y, mask = low_rank_problem(seed=7)
    res = complete_lowrank(Y, mask, method, **kw)
    mse = test_missing_mse(Y, mask, res.completed)
    assert mse < limit
    np.testing.assert_array_equal(res.completed[mask], Y[mask])


def test_softimpute_randomised_svd_path():
    Y, mask = low_rank_problem(m=250, n=220, rank=2, frac=0.3, seed=8)
    out = soft_impute(Y, mask, svd_rank=6, max_iter=150)
    assert test_missing_mse(Y, mask, out) < 1e-3 * float((Y**2).mean())


def test_softimpute_path_waits_for_convergence_and_momentum_helps():
    # Lowering the threshold every iteration froze the iterate (the first version); the path lowers
    # it only once the iterate has converged, and Nesterov momentum speeds each stage up.
    Y, mask = low_rank_problem(m=120, n=100, rank=4, frac=0.3, seed=9)
    per_iter = soft_impute(Y, mask, max_iter=300, path_tol=np.inf, shrink_decay=0.95, momentum=False)
    path = soft_impute(Y, mask, max_iter=300, momentum=False)
    fast = soft_impute(Y, mask, max_iter=300)
    e = [test_missing_mse(Y, mask, out) for out in (per_iter, path, fast)]
    assert e[2] < e[1] < e[0] and e[2] < 1e-4, e


@pytest.mark.parametrize("bad,match", [
    (dict(Y=np.ones(5)), "2-D"),
    (dict(mask=np.ones((3, 3), bool)), "does not match"),
    (dict(mask=np.full((4, 5), 2)), "boolean"),
    (dict(mask=np.zeros((4, 5), bool)), "no observed"),
    (dict(nan_observed=True), "NaN"),
])
def test_input_validation(bad, match):
    Y = np.ones((4, 5))
    mask = np.ones((4, 5), bool)
    if bad.pop("nan_observed", False):
        Y[0, 0] = np.nan
    Y = bad.get("Y", Y)
    mask = bad.get("mask", mask)
    with pytest.raises(ValueError, match=match):
        check_inputs(Y, mask)
    with pytest.raises(ValueError, match=match):
        lin_rfm(Y, mask)


def test_parameter_validation():
    Y, mask = low_rank_problem()
    with pytest.raises(ValueError, match="alpha"):
        lin_rfm(Y, mask, alpha=0)
    with pytest.raises(ValueError, match="val_fraction"):
        lin_rfm(Y, mask, val_fraction=1.0)
    with pytest.raises(ValueError, match="rank"):
        gd_factorization(Y, mask, rank=0)
    with pytest.raises(ValueError, match="rank"):
        als(Y, mask, rank=31)
    with pytest.raises(ValueError, match="unknown method"):
        complete_lowrank(Y, mask, "svt")


def test_float32_and_float64_agree():
    Y, mask = low_rank_problem(seed=9)
    a = lin_rfm(Y, mask, alpha=1.0, max_iter=60, dtype="float32")
    b = lin_rfm(Y, mask, alpha=1.0, max_iter=60, dtype="float64")
    assert np.abs(a - b).max() < 1e-2


def test_callback_sees_every_iteration_and_no_val_runs_to_max_iter():
    Y, mask = low_rank_problem(seed=10)
    seen = []
    res = lin_rfm_result(Y, mask, max_iter=15, val_fraction=0.0, callback=lambda i, Yh: seen.append(i))
    assert seen == list(range(15)) and res.n_iter == 15 and res.best_iter == 14


def test_val_schedule_and_momentum_accelerate_alpha_half():
    # alpha = 1/2 with the old fixed-ridge, no-momentum iteration is slow; the held-out-driven ridge
    # plus restarted momentum must reach a much smaller error on the missing entries in the same budget
    Y, mask = low_rank_problem(seed=7)
    kw = dict(alpha=0.5, max_iter=60, patience=1000, seed=0)
    slow = lin_rfm(Y, mask, reg_schedule="decay", reg_decay=1.0, momentum=0.0, **kw)
    fast = lin_rfm(Y, mask, **kw)
    mse = lambda Z: float(((Z - Y)[~mask] ** 2).mean() / (Y[~mask] ** 2).mean())
    assert mse(fast) < 1e-3
    assert mse(fast) < 0.1 * mse(slow)


def test_bad_schedule_arguments_raise():
    Y, mask = low_rank_problem(seed=1)
    with pytest.raises(ValueError, match="reg_schedule"):
        lin_rfm(Y, mask, reg_schedule="cosine", max_iter=2)
    with pytest.raises(ValueError, match="momentum"):
        lin_rfm(Y, mask, momentum=1.0, max_iter=2)


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_defaults_stop_at_the_held_out_tolerance_with_test_mse_below_1e3(alpha):
    # 150 x 120, rank 3, 3x the r(m + n - r) degrees of freedom observed; everything else default
    rng = np.random.default_rng(11)
    Y = rng.standard_normal((150, 3)) @ rng.standard_normal((3, 120)) / np.sqrt(3)
    mask = np.zeros(Y.size, bool)
    mask[rng.choice(Y.size, size=3 * 3 * (150 + 120 - 3), replace=False)] = True
    mask = mask.reshape(Y.shape)
    res = lin_rfm_result(Y, mask, alpha=alpha)
    assert res.val_error <= 1e-4 and res.n_iter < 2000  # stopped by the default tol
    assert test_missing_mse(Y, mask, res.completed) < 1e-3 * float((Y**2).mean())
