"""scikit-learn conventions of the low-rank estimators: clone, get/set_params, fit/transform,
the held-out-entry score and GridSearchCV over it."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from bigntk.lowrank import ESTIMATORS, METHODS, LinRFM

RANKED = {"gd", "als"}  # need the rank


def make(method: str, **params):
    cls = ESTIMATORS[method]
    return cls(rank=2, **params) if method in RANKED else cls(**params)


def problem(m=40, n=30, rank=2, frac=0.6, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
    Y /= np.sqrt((Y**2).mean())
    return Y, rng.random((m, n)) < frac


FAST = {"linrfm": {"max_iter": 60}, "gd": {"max_iter": 200}, "als": {"max_iter": 20},
        "softimpute": {"max_iter": 60}}


@pytest.mark.parametrize("method", sorted(ESTIMATORS))
def test_clone_and_params_are_the_init_arguments(method):
    est = make(method, seed=3)
    assert isinstance(est, BaseEstimator)
    init = inspect.signature(type(est).__init__).parameters
    assert set(est.get_params(deep=True)) == set(init) - {"self"}
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()


@pytest.mark.parametrize("method", sorted(ESTIMATORS))
def test_estimator_defaults_are_the_function_defaults(method):
    fn = inspect.signature(METHODS[method]).parameters
    init = inspect.signature(ESTIMATORS[method].__init__).parameters
    assert set(fn) - {"Y", "mask", "callback"} == set(init) - {"self"}
    for name, p in init.items():
        if name != "self":
            assert p.default == fn[name].default, name


@pytest.mark.parametrize("method", sorted(ESTIMATORS))
def test_set_params_round_trip(method):
    est = make(method)
    assert est.set_params(max_iter=7, seed=5) is est
    assert est.get_params()["max_iter"] == 7 and est.get_params()["seed"] == 5
    again = type(est)(**est.get_params())
    assert again.get_params() == est.get_params()
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(no_such_parameter=1)


def test_no_validation_in_init_only_in_fit():
    est = LinRFM(alpha=-1.0, max_iter=0)  # accepted as given
    assert est.alpha == -1.0
    Y, mask = problem()
    with pytest.raises(ValueError, match="alpha"):
        est.fit(Y, mask)


@pytest.mark.parametrize("method", sorted(ESTIMATORS))
def test_fit_transform_match_the_functional_api(method):
    Y, mask = problem(seed=1)
    est = make(method, **FAST[method])
    assert est.fit(Y, mask) is est
    kw = dict(FAST[method], **({"rank": 2} if method in RANKED else {}))
    res = METHODS[method](Y, mask, **kw)
    np.testing.assert_array_equal(est.completed_, res.completed)
    assert est.n_iter_ == res.n_iter and est.best_iter_ == res.best_iter and est.history_ == res.history
    np.testing.assert_array_equal(est.observed_, mask)
    np.testing.assert_array_equal(est.transform(), res.completed)
    np.testing.assert_array_equal(make(method, **FAST[method]).fit_transform(Y, mask), res.completed)


def test_nan_marks_missing_entries_imputer_style():
    Y, mask = problem(seed=2)
    Y_nan = np.where(mask, Y, np.nan)
    a = LinRFM(max_iter=40).fit(Y_nan)
    b = LinRFM(max_iter=40).fit(Y, mask)
    np.testing.assert_array_equal(a.completed_, b.completed_)
    filled = a.transform(Y_nan)
    np.testing.assert_array_equal(filled, a.completed_)
    np.testing.assert_array_equal(filled[mask], Y[mask])
    with pytest.raises(ValueError, match="transductive"):
        a.transform(Y_nan[:, :10])
    assert all(k.endswith("_") for k in set(vars(a)) - set(a.get_params()))  # fitted attributes


def test_fitted_attributes():
    Y, mask = problem(seed=3)
    with pytest.raises(NotFittedError):
        LinRFM().transform()
    est = LinRFM(alpha=1.0, max_iter=40).fit(Y, mask)
    assert est.metric_.shape == (30, 30) and est.transposed_ is False and est.reg_ > 0
    gd = ESTIMATORS["gd"](rank=2, max_iter=200).fit(Y, mask)
    assert gd.U_.shape == (40, 2) and gd.V_.shape == (30, 2)
    off = ~mask
    np.testing.assert_allclose((gd.U_ @ gd.V_.T)[off], gd.completed_[off], rtol=1e-5, atol=1e-6)
    assert ESTIMATORS["softimpute"](max_iter=20).fit(Y, mask).threshold_ > 0


def test_score_is_held_out_negative_relative_mse_and_leaves_the_estimator_unfitted():
    Y, mask = problem(seed=4)
    est = LinRFM(alpha=1.0, max_iter=60)
    good = est.score(Y, mask)
    assert -1e-3 < good <= 0.0
    assert est.score(Y, mask) == good  # seeded
    assert est.score(Y, mask, seed=1) != good
    with pytest.raises(NotFittedError):
        est.transform()
    poor = LinRFM(alpha=1.0, max_iter=1).score(Y, mask)
    assert poor < good


def test_grid_search_over_the_ridge():
    Y, mask = problem(m=50, n=40, seed=5)
    Y_nan = np.where(mask, Y, np.nan)
    rows = np.arange(Y.shape[0])
    grid = {"reg": [1e-3, 1e-1, 3.0], "alpha": [1.0]}
    search = GridSearchCV(LinRFM(max_iter=60, reg_schedule="decay"), grid, cv=[(rows, rows)])
    search.fit(Y_nan)  # NaN = missing; the score holds out observed entries itself
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and (scores <= 0).all()
    assert search.best_params_["reg"] == grid["reg"][int(np.argmax(scores))]
    assert search.best_params_["reg"] != 3.0  # a huge ridge biases the fit: the score sees it
    assert search.best_estimator_.completed_.shape == Y.shape
    # the mask may also travel as y
    with_mask = GridSearchCV(LinRFM(max_iter=60, alpha=1.0), {"reg": [1e-2]}, cv=[(rows, rows)]).fit(Y, mask)
    assert np.isfinite(with_mask.best_score_)
