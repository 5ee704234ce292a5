"""scikit-learn conventions of every estimator of the package: BaseEstimator, clone, set_params;
NTKCompleter in GridSearchCV over the ridge and imputer-style fit_transform on a matrix with NaN.
(The low-rank estimators' own conventions: tests/test_lowrank_estimators.py.)"""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GridSearchCV

import bigntk
from bigntk import NTKCompleter
from bigntk.baselines import DNPP, CellMean, FaLRTC
from bigntk.lowrank import ALS, GDFactorization, LinRFM, SoftImpute
from bigntk.operators import DenseOperator
from bigntk.solvers import ConjugateGradient, EigenPro, KernelRegressor


def _estimators() -> dict:
    rng = np.random.default_rng(0)
    K = rng.standard_normal((6, 6))
    return {NTKCompleter: NTKCompleter(rng.standard_normal((3, 8)), ridge=0.1, epochs=3),
            KernelRegressor: KernelRegressor(DenseOperator(K @ K.T, device="cpu"), solver="cg", max_iter=4),
            LinRFM: LinRFM(alpha=1.0), GDFactorization: GDFactorization(rank=2), ALS: ALS(rank=2),
            SoftImpute: SoftImpute(), CellMean: CellMean(), DNPP: DNPP(k=5, center=False),
            FaLRTC: FaLRTC(alpha=(1.0, 0.1, 1.0), iterations=3)}


#: classes with a ``fit`` that are solver objects, not estimators: fit(operator, Y) returns a SolveResult
SOLVER_OBJECTS = {EigenPro, ConjugateGradient}


def _public_classes_with_fit() -> set:
    found = set()
    for info in pkgutil.walk_packages(bigntk.__path__, "bigntk."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_") \
                    and callable(getattr(obj, "fit", None)):
                found.add(obj)
    return found


def test_every_public_class_with_fit_is_covered_here():
    known = set(_estimators()) | SOLVER_OBJECTS
    # a class found is one of them, or a base class of one of them (LowRankCompleter)
    missing = {c for c in _public_classes_with_fit() if not any(issubclass(k, c) for k in known)}
    assert not missing, missing


@pytest.mark.parametrize("cls", list(_estimators()), ids=lambda c: c.__name__)
def test_clone_and_set_params_on_every_estimator(cls):
    est = _estimators()[cls]
    assert isinstance(est, BaseEstimator)
    init = {n for n, p in inspect.signature(cls.__init__).parameters.items()
            if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    assert set(est.get_params(deep=False)) == init
    twin = clone(est)
    assert twin is not est and type(twin) is cls
    assert twin.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    for name in sorted(init)[:1]:
        assert est.set_params(**{name: est.get_params()[name]}) is est


def test_solver_options_given_as_keywords_are_parameters():
    est = NTKCompleter(np.ones((2, 4)), epochs=5, seed=1)
    assert est.get_params()["solver_options"] == {"epochs": 5, "seed": 1}
    assert clone(est).solver_options == {"epochs": 5, "seed": 1}


def test_baseline_parameters_are_checked_by_fit_not_init():
    Y, cell, drug = np.ones((4, 3)), np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    bad = DNPP(k=0)  # constructing never raises (set_params / clone path)
    with pytest.raises(ValueError, match="k must be"):
        bad.fit(Y, cell, drug)
    with pytest.raises(ValueError, match="init must be"):
        FaLRTC(init="zeros").fit(Y, cell, drug)


def _problem(m: int = 30, n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((5, n))
    Y = np.maximum(rng.standard_normal((m, 5)) @ Z, 0)
    return Y, rng.random(Y.shape) < 0.6, Z


def test_ntk_fit_transform_on_a_matrix_with_nan_is_imputer_style():
    Y, mask, Z = _problem()
    Y_nan = np.where(mask, Y, np.nan)
    est = NTKCompleter(Z, ridge=1e-3, dtype="float64", progress=False)
    out = est.fit_transform(Y_nan)  # NaN marks the missing entries
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[mask], Y[mask])
    np.testing.assert_allclose(out, NTKCompleter(Z, ridge=1e-3, dtype="float64", progress=False)
                               .fit(Y, mask).transform(), rtol=1e-10, atol=1e-12)
    new = np.where(mask[:5], Y[:5], np.nan)  # rows of a new matrix over the same columns
    np.testing.assert_allclose(est.transform(new), out[:5], rtol=1e-10, atol=1e-12)


def test_ntk_grid_search_over_the_ridge():
    Y, mask, Z = _problem(m=30, seed=1)
    rows = np.arange(Y.shape[0])
    grid = {"ridge": [1e-4, 1e-1, 1e3]}
    search = GridSearchCV(NTKCompleter(Z, dtype="float64", progress=False), grid, cv=[(rows, rows)])
    search.fit(np.where(mask, Y, np.nan))  # score(): R² on held-out observed entries of the test rows
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all()
    assert search.best_params_["ridge"] == grid["ridge"][int(np.argmax(scores))]
    assert search.best_params_["ridge"] != 1e3  # a huge ridge shrinks the fit towards 0: the score sees it
    assert search.best_estimator_.transform().shape == Y.shape
