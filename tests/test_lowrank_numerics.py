"""Low-rank completers on data far from unit scale and on broken numerics: no hang, no non-finite
output, one clear error (issue: the jitter loop of lin-RFM's per-row solves never ended on a
non-finite metric)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bigntk.lowrank import NumericalError, complete_lowrank, lin_rfm, lin_rfm_result
from bigntk.lowrank import linrfm as linrfm_module
from bigntk.lowrank._common import working_scale

BASELINE_KW = {"linrfm": {}, "gd": {"rank": 2}, "als": {"rank": 2}, "softimpute": {"max_iter": 100}}


def problem(m=20, n=60, rank=2, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
    return Y, rng.random((m, n)) < 0.6


@pytest.mark.timeout(30)
def test_lin_rfm_on_huge_values_returns_the_scaled_completion():
    # the reported hang: 1e20-scaled data made M = Y^T Y / m overflow float32
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((20, 60)) * 1e20
    mask = rng.random(Y.shape) < 0.5
    out = lin_rfm(Y, mask)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[mask], Y[mask])
    ref = lin_rfm(Y / 1e20, mask) * 1e20  # 1e20 is not a power of 4: equal up to round-off
    assert np.abs(out - ref).max() < 1e-3 * np.abs(ref).max()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", sorted(BASELINE_KW))
@pytest.mark.parametrize("factor", [4.0**40, 4.0**-40, 4.0**200])
def test_every_method_is_exactly_scale_equivariant(method, factor):
    # 4^200 ~ 1e120 is beyond float32's range: still computed in float32, on Y / scale
    Y, mask = problem(seed=1)
    kw = dict(BASELINE_KW[method])
    ref = complete_lowrank(Y, mask, method, **kw)
    if method == "als":
        kw["ridge"] = 1e-3 * factor  # ALS's ridge is in data units
    res = complete_lowrank(Y * factor, mask, method, **kw)
    np.testing.assert_array_equal(res.completed, ref.completed * factor)
    assert res.info["scale"] == ref.info["scale"] * factor and res.n_iter == ref.n_iter


def test_working_scale_is_a_power_of_four():
    assert working_scale(np.array([3.0, -5.0])) == 4.0
    assert working_scale(np.array([0.0])) == 1.0
    assert working_scale(np.array([1e300])) == 4.0 ** round(np.log(1e300) / np.log(4))


def _batches(Y, mask):
    return linrfm_module._row_batches(mask, Y, torch.device("cpu"), 2**20)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_solve_rows_on_a_non_finite_metric_raises_instead_of_looping(bad):
    Y, mask = problem()
    batches, _, _, nnz = _batches(Y.T, mask.T)  # (60, 20): metric 20 x 20
    P = torch.eye(20, dtype=torch.float64)
    P[3, 3] = bad
    with pytest.raises(NumericalError, match="NaN/inf"):
        linrfm_module._solve_rows(P, batches, 1e-3, nnz)


@pytest.mark.timeout(30)
def test_solve_rows_on_an_indefinite_metric_raises():
    Y, mask = problem()
    batches, _, _, nnz = _batches(Y.T, mask.T)
    P = -torch.eye(20, dtype=torch.float64) * 1e6  # jitter of 1e8 * lam * mean diag cannot fix it
    P[0, 0] = 1.0
    with pytest.raises(NumericalError, match="not positive definite.*10\\^8-fold"):
        linrfm_module._solve_rows(P, batches, 1e-3, nnz)


@pytest.mark.timeout(30)
def test_non_finite_metric_power_stops_the_fit_at_that_iteration(monkeypatch):
    calls = []
    real = linrfm_module._metric_power

    def overflowing(M, alpha):
        calls.append(1)
        P = real(M, alpha)
        return P * np.inf if len(calls) == 3 else P

    monkeypatch.setattr(linrfm_module, "_metric_power", overflowing)
    Y, mask = problem()
    with pytest.raises(NumericalError, match="metric power.*iteration 2"):
        lin_rfm(Y, mask, alpha=1.0, max_iter=50, tol=0.0)
    assert len(calls) == 3


@pytest.mark.timeout(30)
def test_non_finite_metric_is_caught_before_the_next_solve(monkeypatch):
    monkeypatch.setattr(linrfm_module._Iteration, "_next_metric",
                        lambda self, Yhat, rose: torch.full_like(self.M, np.nan))
    Y, mask = problem()
    with pytest.raises(NumericalError, match="metric M became non-finite at iteration 0"):
        lin_rfm(Y, mask, max_iter=50)


def test_numerical_error_is_a_value_error():
    assert issubclass(NumericalError, ValueError) and issubclass(NumericalError, ArithmeticError)


def test_metric_is_reported_for_the_working_data():
    Y, mask = problem(seed=2)
    a = lin_rfm_result(Y, mask, alpha=1.0, max_iter=20)
    b = lin_rfm_result(Y * 4.0**10, mask, alpha=1.0, max_iter=20)
    np.testing.assert_array_equal(a.info["metric"], b.info["metric"])
    assert b.info["scale"] == a.info["scale"] * 4.0**10


@pytest.mark.parametrize("bad", [np.array([[1 + 1j, 2]]), np.array([["a", "b"]])])
def test_complex_and_non_numeric_input_is_rejected(bad):
    with pytest.raises(ValueError, match="real and numeric"):
        lin_rfm(bad)
