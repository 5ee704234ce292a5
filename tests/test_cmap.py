"""Generator, baselines, priors and the CV protocol on small generated data."""
import json

import numpy as np
import pytest

from bigntk.apps.cmap.cv import CVSettings, cross_validate, markdown_table, paired_test, profile_metrics, REPORT_KEYS
from bigntk.priors.cmap import mixed_prior, sparse_regime_prior
from bigntk.apps.cmap.synth import synthesize
from bigntk.baselines import DNPP, CellMean, FaLRTC, complete_tensor
from bigntk.store import aggregate


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def table(make_cmap_table):
    return make_cmap_table(3000, 8, 60, 40, 30)


def test_generator_shape_and_reproducible(tmp_path, table):
    counts = np.bincount(table.cell, minlength=8)
    assert counts[0] == round(0.95 * 60)  # reference line has nearly all drugs
    assert (counts[1:3] >= 30).all() and (counts[3:] <= 30).all() and (counts[3:] >= 10).all()
    assert table.count.sum() == 3000
    st2 = synthesize(tmp_path / "b.zarr", profiles=3000, cells=8, drugs=60, genes=40, rank=4, n_dense=2,
                     sparse_max=30, dense_frac=(0.5, 0.7), chunk_rows=500, progress=False)
    np.testing.assert_array_equal(aggregate(st2, progress=False).Y, table.Y)  # same seed + chunking
    with pytest.raises(ValueError, match="cannot cover"):
        synthesize(tmp_path / "c.zarr", profiles=10, cells=8, drugs=60, genes=4, progress=False)


def test_falrtc_recovers_low_rank_tensor():
    rng = np.random.default_rng(0)
    T = (rng.standard_normal((30, 3)) @ rng.standard_normal((3, 20 * 6))).reshape(30, 20, 6)
    obs = np.ones_like(T, bool)
    obs[rng.random(30) < 0.3, :, 2] = False  # whole fibres missing, as in CMap
    fill = np.abs(T[~obs] - T[obs].mean()).mean()  # error of the mean fill FaLRTC starts from
    err20 = np.abs(complete_tensor(T, obs) - T)[~obs].mean()  # Hodos settings, 20 iterations
    X = complete_tensor(T, obs, mu_scale=1e-3, iterations=300)
    err = np.abs(X - T)[~obs].mean()
    assert err20 < 0.8 * fill and err < 0.6 * fill
    np.testing.assert_allclose(X[obs], T[obs], rtol=1e-5)


def test_baselines_beat_or_match_cell_mean(table):
    rng = np.random.default_rng(1)
    test = (table.cell == 1) & (rng.random(table.n_pairs) < 0.4)
    tr = ~test
    args = (table.Y[tr], table.cell[tr], table.drug[tr])
    q = (table.cell[test], table.drug[test])
    m = profile_metrics(CellMean().fit(*args).predict(*q), table.Y[test])
    d = profile_metrics(DNPP().fit(*args).predict(*q), table.Y[test])
    f = profile_metrics(FaLRTC(iterations=5).fit(*args).predict(*q), table.Y[test])
    assert d["mean_r2"] > m["mean_r2"]  # the drug effect is shared across lines
    assert np.isfinite(f["pearson_r"]) and f["pearson_r"] > 0.5
    # the cell mean is exactly the training mean of the line
    np.testing.assert_allclose(CellMean().fit(*args).predict([1], [0])[0], table.Y[tr & (table.cell == 1)].mean(0),
                               rtol=1e-5)


def test_sparse_prior_gram_matches_explicit_features(table):
    cols = np.arange(40)
    p = sparse_regime_prior(table.Y, table.cell, table.drug, table.cell[cols], table.drug[cols], reference=0,
                            n_cells=8, n_drugs=60)
    E = p.drug_embedding.numpy()
    # explicit features [w‖e_d‖ m̂_c, e_d, τ I]
    from bigntk.priors.cmap import cell_unit_means
    Mh = cell_unit_means(table.Y, table.cell, 8)
    e = E[table.drug[cols]]
    Z = np.concatenate([0.75 * np.linalg.norm(e, axis=1, keepdims=True) * Mh[table.cell[cols]], e], 1)
    K = Z @ Z.T + 1.5**2 * np.eye(40)
    rho = K / np.sqrt(np.outer(np.diag(K), np.diag(K)))
    np.testing.assert_allclose(p.gram().numpy(), rho, atol=1e-10)
    mp = mixed_prior(table.Y[cols].T, p)
    assert mp.gram().shape == (40, 40) and mp.factors() is None


def test_cv_report_and_paired_test(table):
    s = CVSettings(folds=3, rounds=2, max_cells=3, seed=0)
    reps = [cross_validate(table, m, s, progress=False) for m in ("mean", "dnpp", "ntk")]
    for r in reps:
        assert set(REPORT_KEYS) <= set(r) and r["n_test_profiles"] > 0
        json.dumps(r)
        assert len(r["per_fold"]) == 2 * 3
    assert reps[0]["n_test_profiles"] == reps[2]["n_test_profiles"]
    assert reps[2]["mean_r2"] > reps[0]["mean_r2"]  # NTK with the sparse prior beats the cell mean
    t = paired_test(reps[2], reps[0])
    assert t["n_folds"] == 6 and t["mean_diff"] > 0
    assert "ntk[sparse]" in markdown_table(reps, [t])
    sp = cross_validate(table, "mean", CVSettings(folds=3, rounds=1, max_cells=2, sparse_drugs=5), progress=False)
    assert set(sp["per_regime"]) == {"sparse"}
    other = cross_validate(table, "mean", CVSettings(folds=3, rounds=2, max_cells=2, seed=0), progress=False)
    with pytest.raises(ValueError, match="max_cells: 3 vs 2"):
        paired_test(reps[2], other)  # same fold keys, different splits: refused


def test_cli_synth_and_cv(tmp_path):
    from bigntk.cli import main

    store = str(tmp_path / "s.zarr")
    assert main(["cmap", "synth", "--store", store, "--profiles", "1500", "--cells", "6", "--drugs", "40",
                 "--genes", "20", "--dense", "1", "--quiet"]) == 0
    r1, r2 = str(tmp_path / "mean.json"), str(tmp_path / "ntk.json")
    base = ["cmap", "cv", "--store", store, "--folds", "3", "--rounds", "1", "--max-cells", "2", "--quiet"]
    assert main(base + ["--method", "mean", "--report", r1]) == 0
    assert main(base + ["--method", "ntk", "--solver", "direct", "--report", r2, "--compare", r1]) == 0
    rep = json.loads(open(r2).read())
    assert rep["method"] == "ntk[sparse]" and rep["settings"]["solver"] == "direct"
    assert {c["metric"] for c in rep["comparison"]} == {"pearson_r", "mean_r2"}
    assert (tmp_path / "ntk.md").read_text().startswith("| method")
    assert main(["cmap", "cv", "--store", str(tmp_path / "none.zarr"), "--method", "mean", "--report", r1]) == 2


def test_cli_compare_refuses_reports_of_other_settings_before_computing(tmp_path, capsys, monkeypatch):
    from bigntk.apps.cmap import cv
    from bigntk.cli import main

    store = str(tmp_path / "s.zarr")
    assert main(["cmap", "synth", "--store", store, "--profiles", "600", "--cells", "5", "--drugs", "30",
                 "--genes", "10", "--dense", "1", "--quiet"]) == 0
    base = ["cmap", "cv", "--store", store, "--folds", "3", "--rounds", "1", "--quiet"]
    r1, r2 = str(tmp_path / "two.json"), str(tmp_path / "all.json")
    assert main(base + ["--method", "mean", "--max-cells", "2", "--report", r1]) == 0
    ran = []
    monkeypatch.setattr(cv, "cross_validate", lambda *a, **k: ran.append(1))
    assert main(base + ["--method", "dnpp", "--report", r2, "--compare", r1]) == 2
    err = capsys.readouterr().err
    assert "splits differ" in err and "max_cells: None vs 2" in err
    assert not ran and not (tmp_path / "all.json").exists()


def test_report_per_line_and_the_held_out_predictions(table):
    s = CVSettings(folds=3, rounds=1, max_cells=2, seed=0)
    rep, pred = cross_validate(table, "dnpp", s, progress=False, return_predictions=True)
    assert rep == {**cross_validate(table, "dnpp", s, progress=False), "time_s": rep["time_s"]}
    assert pred["predicted"].shape == pred["measured"].shape == (rep["n_test_profiles"], table.Y.shape[1])
    assert profile_metrics(pred["predicted"], pred["measured"])["pearson_r"] == pytest.approx(rep["pearson_r"])
    assert set(rep["per_line"]) == set(pred["line"]) and len(rep["per_line"]) == 2
    for name, m in rep["per_line"].items():
        rows = pred["line"] == name
        assert m["n_test_profiles"] == rows.sum()
        assert m["mean_r2"] == pytest.approx(profile_metrics(pred["predicted"][rows], pred["measured"][rows])["mean_r2"])


def test_demo_writes_a_cmap_figure_with_labelled_axes(tmp_path):
    from bigntk.apps.cmap.demo import demo_cmap
    from bigntk.viz import cmap_predictions_figure

    out = demo_cmap(tmp_path, profiles=800, cells=5, drugs=40, n_dense=1, genes=12, progress=False, verbose=False)
    assert set(out) == {"mean", "dnpp", "ntk"} and (tmp_path / "cmap_demo.png").stat().st_size > 0
    reports = json.loads((tmp_path / "cmap_demo.json").read_text())
    assert all(r["per_line"] for r in reports.values())
    small = aggregate(tmp_path / "cmap_obs.zarr", progress=False)
    s = CVSettings(folds=3, rounds=1, max_cells=2)
    runs = {m: cross_validate(small, m, s, progress=False, return_predictions=True) for m in ("mean", "dnpp")}
    fig = cmap_predictions_figure({m: p for m, (_, p) in runs.items()}, {m: r for m, (r, _) in runs.items()})
    scatter, bars = fig.axes
    assert "measured" in scatter.get_xlabel() and "predicted" in scatter.get_ylabel()
    assert "cell line" in bars.get_xlabel() and "R²" in bars.get_ylabel()
    legend = [t.get_text() for t in scatter.get_legend().get_texts()]
    assert legend[:2] == [f"{m} (r = {runs[m][0]['pearson_r']:.3f})" for m in ("mean", "dnpp")]
