"""`bigntk cmap impute`: the predictions store (xarray layout, observed entries, NTK equivalence,
baselines, kill-and-resume, refusals), the GCTX export and the command line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import h5py
import numpy as np
import pytest
import torch
import zarr

from bigntk.apps.cmap._impute_models import NTKModel
from bigntk.apps.cmap.export import export_gctx
from bigntk.apps.cmap.impute import PredictionsExistError, impute
from bigntk.apps.cmap.synth import synthesize
from bigntk.baselines import DNPP, CellMean
from bigntk.cli import main
from bigntk.completion import complete
from bigntk.priors.cmap import one_hot_prior, sparse_regime_prior
from bigntk.store import aggregate

xr = pytest.importorskip("xarray")
SHAPE = (6, 120, 50)  # cells, drugs, genes


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # module scope: set before the module's fixtures compute anything
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise resume holds for one thread count; the 2-core box is shared
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def obs(tmp_path_factory):
    path = tmp_path_factory.mktemp("impute") / "obs.zarr"
    synthesize(path, profiles=600, cells=SHAPE[0], drugs=SHAPE[1], genes=SHAPE[2], rank=4, n_dense=2,
               sparse_max=30, seed=3, chunk_rows=200, progress=False)
    return path


@pytest.fixture(scope="module")
def table(obs):
    return aggregate(obs, progress=False)


@pytest.fixture(scope="module")
def pred(obs, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred") / "pred.zarr"
    impute(obs, out, chunk_drugs=32, progress=False)
    return out


def _cube(table):
    cube = np.full(SHAPE, np.nan, np.float32)
    cube[table.cell, table.drug] = table.Y
    observed = np.zeros(SHAPE[:2], bool)
    observed[table.cell, table.drug] = True
    return cube, observed


def test_predictions_store_opens_in_xarray_with_dims_coords_dtypes(pred, table):
    ds = xr.open_zarr(pred)
    assert ds["imputed"].dims == ("cell", "drug", "gene") and ds["imputed"].dtype == np.float32
    assert ds["observed"].dims == ("cell", "drug") and ds["observed"].dtype == bool
    assert ds["imputed"].encoding["chunks"] == (1, 32, SHAPE[2])
    assert ds["cell"].values.tolist() == table.cell_names.astype(str).tolist()
    assert ds["drug"].values.tolist() == table.drug_names.astype(str).tolist()
    assert ds["gene"].values.tolist() == table.gene_ids.astype(str).tolist()
    a = ds.attrs
    assert a["complete"] is True and a["method"] == "ntk" and a["prior"] == "sparse" and a["depth"] == 1
    assert (a["ridge"], a["nugget"], a["w"], a["solver"]) == (0.0, 1.5, 0.75, "auto")
    assert a["input_fingerprint"].startswith("sha256:") and a["bigntk_version"] and a["checksum"]
    assert a["n_observed"] == table.n_pairs and a["n_imputed"] == SHAPE[0] * SHAPE[1] - table.n_pairs
    one = ds["imputed"].sel(cell="cell001", drug="drug00005").values  # label-based selection works
    assert one.shape == (SHAPE[2],) and np.isfinite(one).all()


def test_observed_entries_are_the_aggregated_profiles_bitwise(pred, table):
    ds = xr.open_zarr(pred)
    cube, observed = _cube(table)
    np.testing.assert_array_equal(ds["observed"].values, observed)
    got = ds["imputed"].values
    assert np.isfinite(got).all()
    assert got[observed].tobytes() == cube[observed].tobytes()


@pytest.mark.parametrize("prior", ["sparse", "onehot"])
def test_ntk_predictions_equal_complete_on_the_same_data(obs, pred, table, tmp_path, prior):
    _, observed = _cube(table)
    qc, qd = np.nonzero(~observed)
    cell, drug = np.concatenate([table.cell, qc]), np.concatenate([table.drug, qd])
    if prior == "sparse":
        ref = int(np.argmax(np.bincount(table.cell, minlength=SHAPE[0])))
        p = sparse_regime_prior(table.Y, table.cell, table.drug, cell, drug, reference=ref, n_cells=SHAPE[0],
                                n_drugs=SHAPE[1], w=0.75, nugget=1.5)
        path = pred
    else:
        p = one_hot_prior(cell, drug, "both", nugget=1.5)
        path = impute(obs, tmp_path / "onehot.zarr", prior="onehot", depth=2, progress=False)
    n, G = table.n_pairs, SHAPE[2]
    Y = np.zeros((G, cell.size), np.float32)
    Y[:, :n] = table.Y.T
    mask = np.zeros_like(Y, bool)
    mask[:, :n] = True
    want = complete(Y, mask, p, depth=1 if prior == "sparse" else 2, progress=False)[:, n:].T
    got = xr.open_zarr(path)["imputed"].values[qc, qd]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("method,model", [("mean", CellMean), ("dnpp", DNPP)])
def test_baselines_fit_once_and_predict_chunk_by_chunk(obs, table, tmp_path, method, model):
    out = impute(obs, tmp_path / "b.zarr", method=method, chunk_drugs=7, progress=False)
    _, observed = _cube(table)
    qc, qd = np.nonzero(~observed)
    want = model().fit(table.Y, table.cell, table.drug).predict(qc, qd)
    ds = xr.open_zarr(out)
    np.testing.assert_allclose(ds["imputed"].values[qc, qd], want, rtol=1e-6, atol=1e-6)
    assert ds.attrs["method"] == method and ds.attrs["prior"] is None


def test_falrtc_and_mixed_prior_run(obs, tmp_path):
    for kw in ({"method": "falrtc"}, {"prior": "mixed-dnpp"}):
        ds = xr.open_zarr(impute(obs, tmp_path / f"{'-'.join(kw.values())}.zarr", progress=False, **kw))
        assert np.isfinite(ds["imputed"].values).all() and ds.attrs["complete"]


def test_selection_and_clear_errors(obs, pred, table, tmp_path):
    cells, drugs = ["cell000", "cell002"], [f"drug{i:05d}" for i in range(0, 120, 3)]
    ds = xr.open_zarr(impute(obs, tmp_path / "s.zarr", cells=cells, drugs=drugs, progress=False))
    assert ds["imputed"].shape == (2, 40, SHAPE[2]) and ds["cell"].values.tolist() == cells
    assert ds.attrs["config"]["cells"] == cells and ds.attrs["reference"] == "cell000"
    every = [f"cell{i:03d}" for i in range(SHAPE[0])]
    assert impute(obs, pred, cells=every[::-1], progress=False) == pred  # all cells = no selection: same store
    with pytest.raises(ValueError, match="'nope'"):
        impute(obs, tmp_path / "x.zarr", cells=["cell000", "nope"], progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        impute(obs, tmp_path / "x.zarr", method="svd", progress=False)
    with pytest.raises(ValueError, match="unknown prior"):
        impute(obs, tmp_path / "x.zarr", prior="flat", progress=False)
    with pytest.raises(ValueError, match="reference line 'cell003' is not among"):
        impute(obs, tmp_path / "x.zarr", cells=cells, reference="cell003", progress=False)
    assert not (tmp_path / "x.zarr").exists()


class _Killed(Exception):
    pass


def test_interrupted_run_resumes_to_the_uninterrupted_result_bitwise(obs, pred, tmp_path, monkeypatch):
    out = tmp_path / "r.zarr"

    def die(k, n):
        if k == 5:
            raise _Killed

    with pytest.raises(_Killed):
        impute(obs, out, chunk_drugs=32, progress=False, callback=die)
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["complete"] is False and int((g["done"][...] > 0).sum()) == 5
    monkeypatch.setattr(NTKModel, "fit", lambda self, *a: pytest.fail("resume refitted α"))
    calls = []
    impute(obs, out, progress=False, callback=lambda k, n: calls.append(n))  # chunk_drugs from the store
    assert len(calls) == calls[0] == 6 * 4 - 5
    got, want = zarr.open_group(str(out), mode="r"), zarr.open_group(str(pred), mode="r")
    assert got["imputed"][...].tobytes() == want["imputed"][...].tobytes()
    np.testing.assert_array_equal(got["done"][...], want["done"][...])
    assert got.attrs["checksum"] == want.attrs["checksum"] and got.attrs["complete"] is True
    impute(obs, out, progress=False, callback=lambda k, n: pytest.fail("a complete store was rewritten"))


def test_an_eigenpro_fit_killed_midway_resumes_from_its_checkpoint_bitwise(obs, tmp_path, monkeypatch):
    """The fit of a long run is not lost: EigenPro checkpoints beside the store and the rerun resumes it."""
    from bigntk.apps.cmap.impute import fit_checkpoint
    from bigntk.solvers.eigenpro import _Loop

    kw = dict(solver="eigenpro", solver_options={"epochs": 4, "checkpoint_every": 3}, chunk_drugs=32, progress=False)
    ref = impute(obs, tmp_path / "ref.zarr", **kw)
    out = tmp_path / "k.zarr"
    end_epoch, epochs_run = _Loop.end_epoch, []

    def die_after_two(self):
        end_epoch(self)
        epochs_run.append(self.st.epoch)
        if self.st.epoch == 2 and len(epochs_run) == 2:
            raise _Killed

    monkeypatch.setattr(_Loop, "end_epoch", die_after_two)
    with pytest.raises(_Killed):
        impute(obs, out, **kw)
    assert fit_checkpoint(out).is_dir()
    impute(obs, out, **kw)
    # the rerun went on from the last step checkpoint, inside epoch 2 (not from epoch 1)
    assert epochs_run == [1, 2, 2, 3, 4]
    assert not fit_checkpoint(out).exists()  # removed once α is in the store
    got, want = zarr.open_group(str(out), mode="r"), zarr.open_group(str(ref), mode="r")
    assert got["_state"]["alpha"][...].tobytes() == want["_state"]["alpha"][...].tobytes()
    assert got["imputed"][...].tobytes() == want["imputed"][...].tobytes()


def test_another_configuration_is_refused_never_mixed(obs, pred, tmp_path):
    before = zarr.open_group(str(pred), mode="r")["imputed"][...].tobytes()
    for kw in ({"ridge": 1e-3}, {"prior": "onehot"}, {"method": "mean"}, {"chunk_drugs": 16},
               {"cells": ["cell000", "cell001"]}):
        with pytest.raises(PredictionsExistError, match="--overwrite"):
            impute(obs, pred, progress=False, **kw)
    assert zarr.open_group(str(pred), mode="r")["imputed"][...].tobytes() == before
    other = tmp_path / "other.zarr"
    synthesize(other, profiles=600, cells=SHAPE[0], drugs=SHAPE[1], genes=SHAPE[2], rank=4, n_dense=2,
               sparse_max=30, seed=4, chunk_rows=200, progress=False)
    with pytest.raises(PredictionsExistError, match="input_fingerprint"):
        impute(other, pred, progress=False)
    (tmp_path / "foreign").mkdir()
    with pytest.raises(PredictionsExistError, match="not a bigntk predictions store"):
        impute(obs, tmp_path / "foreign", overwrite=True, progress=False)
    out = tmp_path / "o.zarr"
    impute(obs, out, method="mean", progress=False)
    impute(obs, out, prior="onehot", overwrite=True, progress=False)
    assert zarr.open_group(str(out), mode="r").attrs["prior"] == "onehot"


def test_a_second_writer_is_refused_at_once(obs, tmp_path):
    from bigntk import persist

    out = tmp_path / "busy.zarr"
    with persist.exclusive(out):
        with pytest.raises(persist.StoreBusyError, match="another process"):
            impute(obs, out, method="mean", progress=False)
    assert not out.exists()


def test_gctx_export_reads_back_with_cmappy(pred, tmp_path):
    from cmapPy.pandasGEXpress.parse import parse

    ds = xr.open_zarr(pred)
    path = tmp_path / "unobserved.gctx"
    n = export_gctx(pred, path, cells=["cell001", "cell004"])
    with warnings.catch_warnings():  # cmapPy's own pandas deprecation
        warnings.simplefilter("ignore", FutureWarning)
        g = parse(str(path))
    obs = ds["observed"].values
    assert n == int((~obs[[1, 4]]).sum()) == g.data_df.shape[1]
    assert g.data_df.index.tolist() == ds["gene"].values.tolist()
    for cid in g.data_df.columns[:: max(1, n // 10)]:
        cell, drug = cid.split(":")
        np.testing.assert_array_equal(g.data_df[cid].to_numpy(np.float32),
                                      ds["imputed"].sel(cell=cell, drug=drug).values)
        assert g.col_metadata_df.loc[cid, "cell_id"] == cell and g.col_metadata_df.loc[cid, "pert_id"] == drug
    assert set(g.col_metadata_df["cell_id"]) == {"cell001", "cell004"} and not g.col_metadata_df["observed"].any()
    n_all = export_gctx(pred, tmp_path / "all.gctx", drugs=["drug00000", "drug00001"], pairs="all")
    with h5py.File(tmp_path / "all.gctx", "r") as f:
        M, ids = f["0/DATA/0/matrix"][...], [b.decode() for b in f["0/META/COL/id"][...]]
    assert n_all == SHAPE[0] * 2 == M.shape[0] and ids[:2] == ["cell000:drug00000", "cell000:drug00001"]
    np.testing.assert_array_equal(M, ds["imputed"].values[:, :2].reshape(-1, SHAPE[2]))
    with pytest.raises(ValueError, match="'drug99999'"):
        export_gctx(pred, tmp_path / "bad.gctx", drugs=["drug99999"])


def test_cli_end_to_end(obs, pred, tmp_path, capsys):
    out, gctx = tmp_path / "cli.zarr", tmp_path / "cli.gctx"
    rc = main(["cmap", "impute", "--store", str(obs), "--out", str(out), "--chunk-drugs", "32", "--gctx", str(gctx),
               "--drugs", "drug00001,drug00002,drug00003", "--quiet", "--threads", "1", "--memory-budget", "64MB"])
    line = capsys.readouterr().out.strip()
    assert rc == 0 and "pairs" in line and str(out) in line and str(gctx) in line
    ds = xr.open_zarr(out)
    assert ds["imputed"].shape == (SHAPE[0], 3, SHAPE[2]) and gctx.is_file()
    assert main(["cmap", "impute", "--store", str(obs), "--out", str(out), "--ridge", "0.1", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(os.path.dirname(os.path.dirname(__file__))),
                                                          os.environ.get("PYTHONPATH", "")]),
            "BIGNTK_THREADS": "1", "OMP_NUM_THREADS": "1"}


def test_sigkill_mid_run_then_rerun_equals_an_undisturbed_run(obs, tmp_path, one_thread):
    # bitwise equality needs one summation order: the killed CLI run and the in-process runs use one thread
    out = tmp_path / "k.zarr"
    cmd = [sys.executable, "-m", "bigntk", "cmap", "impute", "--store", str(obs), "--out", str(out),
           "--chunk-drugs", "4", "--memory-budget", "256MB", "--quiet", "--threads", "1"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done_dir, deadline = out / "done" / "c", time.time() + 120

    def written() -> int:
        return sum(len(f) for _, _, f in os.walk(done_dir)) if done_dir.is_dir() else 0

    while time.time() < deadline and proc.poll() is None and written() < 8:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 8 <= written() < SHAPE[0] * SHAPE[1] // 4
    impute(obs, out, progress=False)  # the resumed run, in this process (same configuration as the CLI's)
    ref = impute(obs, tmp_path / "ref.zarr", chunk_drugs=4, memory_budget="256MB", progress=False)
    got, want = zarr.open_group(str(out), mode="r"), zarr.open_group(str(ref), mode="r")
    assert got["imputed"][...].tobytes() == want["imputed"][...].tobytes()
    assert got.attrs["checksum"] == want.attrs["checksum"]


def test_own_gctx_ingest_impute_xarray(tmp_path):
    """A small GCTX written here (h5py) → `bigntk cmap ingest` → `bigntk cmap impute` → xarray."""
    rng = np.random.default_rng(0)
    genes = [f"{i}_at" for i in range(12)]
    cells, drugs = ["A375", "MCF7", "PC3"], ["BRD-1", "BRD-2", "BRD-3", "BRD-4", "BRD-5"]
    pairs = [("A375", "BRD-1"), ("A375", "BRD-2"), ("A375", "BRD-4"), ("PC3", "BRD-3")]
    pairs += [("MCF7", d) for d in drugs]
    reps = [p for p in pairs for _ in range(2)]
    X = rng.standard_normal((len(reps), len(genes))).astype(np.float32)
    src = tmp_path / "tiny.gctx"
    with h5py.File(src, "w") as f:
        f.create_dataset("0/DATA/0/matrix", data=X)
        f.create_dataset("0/META/ROW/id", data=np.array(genes, dtype="S"))
        f.create_dataset("0/META/COL/id", data=np.array([f"p{i}" for i in range(len(reps))], dtype="S"))
        f.create_dataset("0/META/COL/cell_id", data=np.array([c for c, _ in reps], dtype="S"))
        f.create_dataset("0/META/COL/pert_id", data=np.array([d for _, d in reps], dtype="S"))
    store, out = tmp_path / "obs.zarr", tmp_path / "pred.zarr"
    assert main(["cmap", "ingest", str(src), "--store", str(store), "--quiet"]) == 0
    assert main(["cmap", "impute", "--store", str(store), "--out", str(out), "--quiet", "--threads", "1"]) == 0
    ds = xr.open_zarr(out)
    assert sorted(ds["cell"].values.tolist()) == cells and sorted(ds["drug"].values.tolist()) == drugs
    assert ds["gene"].values.tolist() == genes and ds.attrs["reference"] == "MCF7"
    for c, d in pairs:
        mean = X[[i for i, p in enumerate(reps) if p == (c, d)]].mean(0)
        np.testing.assert_allclose(ds["imputed"].sel(cell=c, drug=d).values, mean, rtol=1e-6)
        assert bool(ds["observed"].sel(cell=c, drug=d))
    assert int(ds["observed"].sum()) == len(pairs) and np.isfinite(ds["imputed"].values).all()
