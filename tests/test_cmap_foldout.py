"""Exact fold-out NTK cross-validation equals one refit per split (float64), at a fraction of the cost."""
import numpy as np
import pytest

from bigntk.apps.cmap.cv import CVSettings, cross_validate


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def table(make_cmap_table):
    return make_cmap_table(1500, 6, 50, 30, 25)


def _pair(table, **kw):
    base = dict(folds=4, rounds=2, seed=3, min_drugs=5, dtype="float64", solver="direct", **kw)
    fast = cross_validate(table, "ntk", CVSettings(**base), progress=False)
    slow = cross_validate(table, "ntk", CVSettings(refit="always", **base), progress=False)
    return fast, slow


@pytest.mark.parametrize("kw", [dict(prior="sparse"), dict(prior="onehot", ridge=0.1),
                                dict(prior="sparse", sparse_drugs=6, depth=2)])
def test_fold_out_equals_refits(table, kw):
    fast, slow = _pair(table, **kw)
    assert fast["cv_mode"] == "fold-out" and slow["cv_mode"] == "refit"
    assert len(fast["per_fold"]) == len(slow["per_fold"]) == 2 * 4
    for a, b in zip(fast["per_fold"], slow["per_fold"]):
        assert (a["round"], a["fold"], a["n_test_profiles"]) == (b["round"], b["fold"], b["n_test_profiles"])
        for m in ("pearson_r", "mean_r2", "mean_cosine"):
            assert abs(a[m] - b[m]) <= 1e-6, (m, a[m], b[m])


def test_fold_out_predictions_equal_refit_predictions(table):
    from bigntk.apps.cmap.cv import eligible, iter_splits, ntk_predict
    from bigntk.apps.cmap.foldout import FoldOut

    s = CVSettings(folds=3, rounds=1, min_drugs=5, dtype="float64", solver="direct")
    data, ref = eligible(table, s)
    fold = FoldOut(data, ref, s)
    splits = sorted(iter_splits(data, ref, s), key=lambda x: x[1])
    for _, c, test, train in splits[:4]:
        np.testing.assert_allclose(fold.predict(c, test, train), ntk_predict(data, train, test, ref, s),
                                   rtol=0, atol=1e-6)


def test_mixed_prior_and_small_budget_fall_back_to_refits(table):
    s = CVSettings(folds=2, rounds=1, max_cells=1, min_drugs=5, prior="mixed-dnpp")
    with pytest.warns(UserWarning, match="refitting once per split"):
        assert cross_validate(table, "ntk", s, progress=False)["cv_mode"] == "refit"
    s = CVSettings(folds=2, rounds=1, max_cells=1, min_drugs=5, memory_budget=1000)
    with pytest.warns(UserWarning, match="over the memory budget"):
        assert cross_validate(table, "ntk", s, progress=False)["cv_mode"] == "refit"
