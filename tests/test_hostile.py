"""Hostile inputs through the API and the CLI: one clear error, before computing, nothing written."""
from __future__ import annotations

import os

import numpy as np
import pytest

import bigntk
from bigntk import priors
from bigntk.apps.cmap.cv import CVSettings
from bigntk.cli import main


def _small():
    rng = np.random.default_rng(0)
    return rng.random((3, 6)), np.ones((3, 6), bool), rng.random((2, 6))


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(device="tpu"), ValueError, "device"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(memory_budget=-5), ValueError, "memory budget"),
    (dict(memory_budget="lots"), ValueError, "memory budget"),
    (dict(threads=0), ValueError, "threads"),
    (dict(solver="eigenpro", epochz=3), ValueError, "unknown option"),
    (dict(solver="eigenpro", epochs=0), ValueError, "epochs"),
    (dict(solver="eigenpro", tol=-1), ValueError, "tol"),
    (dict(solver="cg", tol=float("nan")), ValueError, "tol"),
    (dict(solver="direct", epochs=3), ValueError, "no options"),
    (dict(depth=2.5), ValueError, "depth"),
    (dict(nugget=float("inf")), ValueError, "nugget"),
])
def test_api_rejects_bad_settings_with_one_clear_error(kwargs, err, match):
    Y, mask, Z = _small()
    with pytest.raises(err, match=match):
        bigntk.complete(Y, mask, Z, progress=False, **kwargs)


def test_values_beyond_float32_are_refused_not_turned_into_nan():
    Y, mask, Z = _small()
    with pytest.raises(ValueError, match="float64"):
        bigntk.complete(Y * 1e39, mask, Z, progress=False)
    out = bigntk.complete(Y * 1e39, mask, Z, dtype="float64", nugget=1.0, progress=False)
    assert np.isfinite(out).all()


def test_direct_solve_too_large_for_memory_is_refused_before_allocating():
    p = priors.one_hot(np.arange(200_000) % 7, 7)
    with pytest.raises(MemoryError, match="GB"):
        bigntk.complete(np.zeros((1, 200_000)), np.ones((1, 200_000), bool), p, solver="direct", nugget=1.0,
                        progress=False)


@pytest.mark.parametrize("extra,match", [
    (["--memory-budget", "-3"], "memory budget"),
    (["--memory-budget", "12"], "below 1 MB"),
    (["--threads", "0"], "threads"),
    (["--solver", "magic"], "invalid choice"),
    (["--dtype", "float16"], "invalid choice"),
])
def test_cli_rejects_bad_compute_options(tmp_path, capsys, extra, match):
    Y, _, Z = _small()
    np.save(tmp_path / "Y.npy", Y)
    np.save(tmp_path / "Z.npy", Z)
    with pytest.raises(SystemExit) as exc:
        main(["complete", str(tmp_path / "Y.npy"), "--prior", str(tmp_path / "Z.npy"), "--out",
              str(tmp_path / "o.npy"), *extra])
    assert exc.value.code == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


def test_cli_bad_device_is_one_line_and_writes_nothing(tmp_path, capsys):
    Y, _, Z = _small()
    np.save(tmp_path / "Y.npy", Y)
    np.save(tmp_path / "Z.npy", Z)
    rc = main(["complete", str(tmp_path / "Y.npy"), "--prior", str(tmp_path / "Z.npy"), "--out",
               str(tmp_path / "o.npy"), "--device", "tpu", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "tpu" in err[0] and not (tmp_path / "o.npy").exists()


# -- the command line: a table of hostile inputs -------------------------------------------------------
def _gctx(path, X, row_ids, col_ids) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f["0/DATA/0/matrix"] = np.asarray(X, np.float32)
        f["0/META/ROW/id"] = np.array(row_ids, dtype="S")
        f["0/META/COL/id"] = np.array(col_ids, dtype="S")
        f["0/META/COL/cell_id"] = np.array(["A", "A", "B", "B"], dtype="S")
        f["0/META/COL/pert_id"] = np.array(["d1", "d2", "d1", "d2"], dtype="S")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Inputs of every kind, good and bad, shared by the CLI cases (none of them may change it)."""
    import zarr

    from bigntk.apps.cmap.synth import synthesize
    from bigntk.apps.inpaint import io, masks

    d = tmp_path_factory.mktemp("hostile")
    Y, _, Z = _small()
    np.save(d / "Y.npy", Y)
    np.save(d / "Z.npy", Z)
    np.save(d / "Zbig.npy", Z * 1e200)
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "text.npy").write_text("1 2 3\n")
    (d / "empty.npy").write_bytes(b"")
    img = (0.5 + 0.4 * np.sin(np.mgrid[0:16, 0:16][0] / 3.0)).astype(np.float32)
    io.save_image(d / "in.png", img)
    io.save_image(d / "m.png", masks.center_hole(img.shape, 4).astype(np.float32))
    (d / "bad.png").write_text("not a png")
    (d / "empty.png").write_bytes(b"")
    (d / "bad.gctx").write_text("not hdf5")
    (d / "empty.gctx").write_bytes(b"")
    (d / "empty.gct").write_bytes(b"")
    (d / "x.txt").write_text("hi")
    X = np.random.default_rng(0).random((4, 3))
    _gctx(d / "dup.gctx", X, ["g1", "g2", "g3"], ["p1", "p1", "p3", "p4"])
    _gctx(d / "inf.gctx", np.where(np.eye(4, 3, dtype=bool), np.inf, X), ["g1", "g2", "g3"], ["p1", "p2", "p3", "p4"])
    (d / "data").mkdir()
    (d / "data" / "keep.gct").write_text("#1.3\n2\t4\t1\t2\nid\tdesc\tp1\tp2\tp3\tp4\n"
                                         "cell_id\t-666\tA\tA\tB\tB\npert_id\t-666\td1\td2\td1\td2\n"
                                         "g1\tx\t1\t2\t3\t4\ng2\tx\t5\t6\t7\t8\n")
    synthesize(d / "s.zarr", profiles=300, cells=4, drugs=30, genes=8, n_dense=1, progress=False)
    for name, damage in (("broken", lambda g: g["drug"]), ("incomplete", None)):
        synthesize(d / f"{name}.zarr", profiles=300, cells=4, drugs=30, genes=8, n_dense=1, progress=False)
        if damage is None:
            zarr.open_group(str(d / f"{name}.zarr"), mode="r+").attrs["complete"] = False  # a killed writer's
        else:
            import shutil

            shutil.rmtree(d / f"{name}.zarr" / "drug")
    assert main(["kernel", "build", "--levels", "2", "--shape", "8x8", "--form", "full", "--store", str(d / "k.zarr"),
                 "--quiet"]) == 0
    (d / "notjson.json").write_text("{not json")
    (d / "nofolds.json").write_text('{"method": "mean"}')
    return d


def _snapshot(d) -> dict:
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


_PNG = ["inpaint", "{d}/in.png", "--mask", "{d}/m.png", "--quiet", "--cache-dir", "{o}/cache"]
_CV = ["cmap", "cv", "--store", "{d}/nope.zarr", "--method", "ntk", "--report", "{o}/r.json", "--quiet"]
_IMPUTE = ["cmap", "impute", "--store", "{d}/nope.zarr", "--out", "{o}/p.zarr", "--quiet"]
_SYNTH = ["cmap", "synth", "--profiles", "300", "--cells", "4", "--drugs", "30", "--genes", "8", "--dense", "1",
          "--quiet"]

#: (argv, message): every case must exit 2 with one line matching the message and write nothing. Cases
#: on "{d}/nope.zarr" show that the settings are checked before the store is read.
CLI_CASES = {
    # item 7/10: broken, empty and misnamed input files
    "npy-text": (["complete", "{d}/text.npy", "--prior", "{d}/Z.npy", "--out", "{o}/o.npy"], "text.npy is not a .npy"),
    "npy-empty": (["complete", "{d}/empty.npy", "--prior", "{d}/Z.npy", "--out", "{o}/o.npy"], "empty.npy is empty"),
    "npy-object": (["complete", "{d}/obj.npy", "--prior", "{d}/Z.npy", "--out", "{o}/o.npy"], "Python objects"),
    "npy-missing": (["complete", "{d}/none.npy", "--prior", "{d}/Z.npy", "--out", "{o}/o.npy"], "No such Y file"),
    "prior-1e200": (["complete", "{d}/Y.npy", "--prior", "{d}/Zbig.npy", "--out", "{o}/o.npy"], "rescale the prior"),
    "lowrank-text": (["lowrank", "{d}/text.npy", "--out", "{o}/o.npy", "--quiet"], "not a .npy array file"),
    "png-corrupt": (["inpaint", "{d}/bad.png", "--mask", "{d}/m.png", "--out", "{o}/o.png", "--quiet"],
                    "bad.png is not a readable .png image"),
    "png-empty": (["inpaint", "{d}/empty.png", "--mask", "{d}/m.png", "--out", "{o}/o.png", "--quiet"],
                  "empty.png is not a readable .png"),
    "png-corrupt-mask": (["inpaint", "{d}/in.png", "--mask", "{d}/bad.png", "--out", "{o}/o.png", "--quiet"],
                         "bad.png is not a readable .png"),
    "gctx-corrupt": (["cmap", "ingest", "{d}/bad.gctx", "--store", "{o}/s.zarr", "--quiet"],
                     "bad.gctx is not a readable GCTX"),
    "gctx-empty": (["cmap", "ingest", "{d}/empty.gctx", "--store", "{o}/s.zarr", "--quiet"],
                   "empty.gctx is not a readable"),
    "gct-empty": (["cmap", "ingest", "{d}/empty.gct", "--store", "{o}/s.zarr", "--quiet"], "empty.gct is empty"),
    "gctx-duplicate-ids": (["cmap", "ingest", "{d}/dup.gctx", "--store", "{o}/s.zarr", "--quiet"],
                           "profile .column. ids occur more than once .e.g. 'p1'"),
    "gctx-inf": (["cmap", "ingest", "{d}/inf.gctx", "--store", "{o}/s.zarr", "--quiet"], "infinite values"),
    "ingest-wrong-suffix": (["cmap", "ingest", "{d}/x.txt", "--store", "{o}/s.zarr", "--quiet"], ".gctx or .gct"),
    # item 1/7: existing outputs, foreign directories, damaged stores
    "store-exists": ([*_SYNTH, "--store", "{d}/s.zarr"], "exists; pass overwrite=True .CLI: --overwrite"),
    "overwrite-foreign-dir": (["cmap", "ingest", "{d}/data/keep.gct", "--store", "{d}/data", "--overwrite",
                               "--quiet"], "not a store.*refusing to overwrite"),
    "overwrite-a-file": ([*_SYNTH, "--store", "{d}/x.txt", "--overwrite"], "is a file.*refusing to overwrite"),
    "store-inside-store": ([*_SYNTH, "--store", "{d}/s.zarr/inner.zarr"], "store .*inner.zarr is inside the store"),
    "kernel-store-of-another-kernel": (["kernel", "build", "--levels", "3", "--shape", "16x16", "--form", "full",
                                        "--store", "{d}/k.zarr", "--quiet"], "different kernel.*CLI: --overwrite"),
    "store-missing-array": (["cmap", "aggregate", "--store", "{d}/broken.zarr", "--out", "{o}/a.zarr", "--quiet"],
                            "broken.zarr is damaged: array.s. drug are missing"),
    "store-incomplete": (["cmap", "aggregate", "--store", "{d}/incomplete.zarr", "--out", "{o}/a.zarr", "--quiet"],
                         "incomplete.*rerun the command that wrote it with --overwrite"),
    "store-absent": (["cmap", "aggregate", "--store", "{d}/nope.zarr", "--out", "{o}/a.zarr", "--quiet"],
                     "no observation store"),
    # item 8: output paths and extensions, before computing
    "out-in-a-file": (["complete", "{d}/Y.npy", "--prior", "{d}/Z.npy", "--out", "{d}/x.txt/o.npy"], "Not a directory"),
    "out-inside-store": (["complete", "{d}/Y.npy", "--prior", "{d}/Z.npy", "--out", "{d}/s.zarr/o.npy"],
                         "inside the store"),
    "lowrank-out-inside-store": (["lowrank", "{d}/Y.npy", "--out", "{d}/s.zarr/o.npy", "--quiet"], "inside the store"),
    "png-out-extension": ([*_PNG, "--out", "{o}/o.xyz"], "unsupported extension '.xyz'"),
    "png-report-extension": ([*_PNG, "--out", "{o}/o.png", "--report", "{o}/r.txt"], "--report .*'.txt'"),
    "png-out-inside-store": ([*_PNG, "--out", "{d}/s.zarr/o.png"], "inside the store"),
    "heatmap-bare-name": (["kernel", "heatmap", "{d}/none.zarr", "--pixel", "1,1", "--out", "{o}/foo"],
                          "unsupported extension '.none.'"),
    "impute-out-inside-store": (["cmap", "impute", "--store", "{d}/s.zarr", "--out", "{d}/s.zarr/p.zarr", "--quiet"],
                                "inside the store"),
    "impute-out-foreign-dir": (["cmap", "impute", "--store", "{d}/s.zarr", "--out", "{d}/data", "--method", "mean",
                                "--quiet"], "exists and is not a bigntk predictions store: refusing"),
    "out-is-a-directory": (["complete", "{d}/Y.npy", "--prior", "{d}/Z.npy", "--out", "{d}/data"],
                           "data is a directory: refusing to replace it"),
    "lowrank-out-is-a-store": (["lowrank", "{d}/Y.npy", "--out", "{d}/s.zarr", "--quiet"],
                               "'bigntk-observations' store, not a 'bigntk-completion' store: refusing"),
    "impute-gctx-extension": ([*_IMPUTE, "--gctx", "{o}/x.txt"], "--gctx .*'.txt'"),
    "checkpoint-inside-store": ([*_IMPUTE, "--solver", "eigenpro", "--solver-kwargs",
                                 '{{"checkpoint": "{d}/s.zarr/ck"}}'], "checkpoint .* inside the store"),
    "cv-report-extension": ([*_CV[:-3], "--report", "{o}/r.txt", "--quiet"], "--report .*'.txt'"),
    "cv-report-inside-store": ([*_CV[:-3], "--report", "{d}/s.zarr/r.json", "--quiet"], "inside the store"),
    "cv-compare-missing": ([*_CV, "--compare", "{d}/none.json"], "No such file.*none.json"),
    "cv-compare-not-json": ([*_CV, "--compare", "{d}/notjson.json"], "not a JSON report"),
    "cv-compare-not-a-report": ([*_CV, "--compare", "{d}/nofolds.json"], "not a bigntk cmap cv report"),
    # item 8: settings, before computing
    "cv-folds-0": ([*_CV, "--folds", "0"], "folds must be an integer >= 2, got 0"),
    "cv-folds-1": ([*_CV, "--folds", "1"], "folds must be an integer >= 2, got 1"),
    "cv-rounds-0": ([*_CV, "--rounds", "0"], "rounds must be"),
    "cv-depth-0": ([*_CV, "--depth", "0"], "depth must be"),
    "cv-epochz": ([*_CV, "--solver", "eigenpro", "--solver-kwargs", '{{"epochz": 3}}'], r"unknown option.*'epochz'"),
    "cv-tol-negative": ([*_CV, "--solver", "eigenpro", "--solver-kwargs", '{{"tol": -1}}'], "tol must be"),
    "cv-epochs-0": ([*_CV, "--solver", "eigenpro", "--solver-kwargs", '{{"epochs": 0}}'], "epochs must be >= 1"),
    "cv-kwargs-not-json": ([*_CV, "--solver-kwargs", "{{epochs"], "--solver-kwargs is not valid JSON"),
    "cv-kwargs-not-a-dict": ([*_CV, "--solver-kwargs", "[1]"], "--solver-kwargs must be a JSON object"),
    "impute-epochz": ([*_IMPUTE, "--solver", "eigenpro", "--solver-kwargs", '{{"epochz": 3}}'], "unknown option"),
    "impute-tol-negative": ([*_IMPUTE, "--solver", "cg", "--solver-kwargs", '{{"tol": -1}}'], "tol must be"),
    "complete-depth-0": (["complete", "{d}/Y.npy", "--prior", "{d}/Z.npy", "--out", "{o}/o.npy", "--depth", "0"],
                         "depth must be an integer >= 1"),
    "png-levels-0": ([*_PNG, "--out", "{o}/o.png", "--levels", "0"], "levels must be an integer >= 1"),
    "png-epochs-0": ([*_PNG, "--out", "{o}/o.png", "--levels", "2", "--solver", "eigenpro", "--epochs", "0"],
                     "epochs must be an integer >= 1"),
    "png-tol-negative": ([*_PNG, "--out", "{o}/o.png", "--levels", "2", "--solver", "cg", "--tol", "-1"],
                         "tol must be a finite number > 0"),
    "png-dip-epochs-0": ([*_PNG, "--out", "{o}/o.png", "--method", "dip", "--levels", "2", "--epochs", "0"],
                         "iterations .CLI: --epochs. must be"),
    # item 9: resources, estimated before allocating
    "png-levels-20": ([*_PNG, "--out", "{o}/o.png", "--levels", "20"],
                      r"levels=20 pads the 16x16 image to 2097152x2097152 pixels.*GB of memory.*fewer levels"),
    "device-tpu": (["complete", "{d}/Y.npy", "--prior", "{d}/Z.npy", "--out", "{o}/o.npy", "--device", "tpu"], "tpu"),
}


@pytest.mark.parametrize("argv,match", list(CLI_CASES.values()), ids=list(CLI_CASES))
def test_cli_hostile_input_is_one_line_exit_2_and_writes_nothing(files, tmp_path, capsys, argv, match):
    import re

    before = _snapshot(files)
    rc = main([a.format(d=files, o=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert re.search(match, err[0]) and "unexpected" not in err[0], err[0]
    assert [p for p in tmp_path.rglob("*") if not p.name.endswith(".lock")] == []
    assert _snapshot(files) == before  # the inputs (and the old outputs) are intact


# -- item 1: --overwrite replaces only a store of its kind, atomically, one writer at a time ---------------
def test_overwrite_of_an_observation_store_is_atomic_and_a_second_writer_is_refused(tmp_path):
    from bigntk import persist
    from bigntk.store import ObservationWriter, open_store

    path = tmp_path / "s.zarr"
    with ObservationWriter.create(path, ["g1", "g2"]) as w:
        w.append(np.ones((3, 2)), ["A"] * 3, ["d"] * 3)
    with pytest.raises(RuntimeError, match="disk died"):
        with ObservationWriter.create(path, ["g1", "g2"], overwrite=True) as w:
            with pytest.raises(persist.StoreBusyError, match="another process"):
                ObservationWriter.create(path, ["g1", "g2"], overwrite=True)  # two overwrites never both succeed
            w.append(np.zeros((5, 2)), ["B"] * 5, ["e"] * 5)
            raise RuntimeError("disk died")
    st = open_store(path)  # the failed overwrite kept the old store
    assert st.n_profiles == 3 and np.all(st.read() == 1) and not list(tmp_path.glob(".s.zarr.tmp-*"))
    with pytest.raises(RuntimeError):
        with ObservationWriter.create(tmp_path / "new.zarr", ["g1"]) as w:
            raise RuntimeError("failed before the first row")
    assert not (tmp_path / "new.zarr").exists()  # a failed new store leaves nothing


def test_impute_overwrite_that_fails_keeps_the_old_predictions(files, tmp_path):
    import zarr

    from bigntk.apps.cmap.impute import impute

    out = tmp_path / "p.zarr"
    impute(files / "s.zarr", out, method="mean", progress=False)
    before = np.asarray(zarr.open_group(str(out))["imputed"][...])

    def fail(k, n):
        raise KeyboardInterrupt  # e.g. Ctrl-C after the first chunk of the replacing run

    with pytest.raises(KeyboardInterrupt):
        impute(files / "s.zarr", out, method="dnpp", overwrite=True, progress=False, callback=fail)
    g = zarr.open_group(str(out))
    assert g.attrs["method"] == "mean" and g.attrs["complete"]
    assert np.array_equal(np.asarray(g["imputed"][...]), before, equal_nan=True)
    impute(files / "s.zarr", out, method="dnpp", overwrite=True, progress=False)
    assert zarr.open_group(str(out)).attrs["method"] == "dnpp" and not list(tmp_path.glob(".p.zarr.tmp-*"))


# -- items 7-9: failures of the disk, the output folder and memory, before computing ----------------------
def test_read_only_output_folder_is_refused_before_computing(files, tmp_path, capsys, monkeypatch):
    import errno
    from pathlib import Path

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root writes anyway: make the folder behave like a read-only mount
        touch = Path.touch

        def read_only(self, *a, **k):
            if self.parent == ro:
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return touch(self, *a, **k)

        monkeypatch.setattr(Path, "touch", read_only)
    import bigntk.completion as completion

    monkeypatch.setattr(completion, "complete", lambda *a, **k: pytest.fail("computed before the check"))
    rc = main(["complete", str(files / "Y.npy"), "--prior", str(files / "Z.npy"), "--out", str(ro / "o.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(ro) in err[0] and "choose another" in err[0]
    assert list(ro.iterdir()) == []


def test_kernel_build_that_does_not_fit_on_the_disk_is_refused_with_the_estimate(tmp_path, capsys, monkeypatch):
    from bigntk import persist

    monkeypatch.setattr(persist, "free_disk_bytes", lambda path: 40_000)  # a 40 kB file system
    rc = main(["kernel", "build", "--levels", "2", "--shape", "32x32", "--form", "full", "--store",
               str(tmp_path / "k.zarr"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "MB on disk" in err[0] and "--form window" in err[0], err
    assert not (tmp_path / "k.zarr").exists()


def test_inpaint_direct_solve_too_large_is_refused_before_the_kernel_is_built(files, tmp_path, capsys, monkeypatch):
    from bigntk import backend

    monkeypatch.setattr(backend, "free_memory_bytes", lambda device=None: 20_000)
    rc = main(["inpaint", str(files / "in.png"), "--mask", str(files / "m.png"), "--levels", "2", "--solver",
               "direct", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "o.png"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "direct solve over 240 points" in err[0] and "eigenpro" in err[0], err
    assert not (tmp_path / "o.png").exists() and not list((tmp_path / "cache").glob("cntk-*"))


# -- item 4/10: what is written and said ------------------------------------------------------------------
def test_out_without_suffix_writes_exactly_the_named_file(files, tmp_path, capsys):
    rc = main(["complete", str(files / "Y.npy"), "--prior", str(files / "Z.npy"), "--out", str(tmp_path / "foo"),
               "--quiet"])
    assert rc == 0 and capsys.readouterr().out.strip().endswith(str(tmp_path / "foo"))
    assert [p.name for p in tmp_path.iterdir()] == ["foo"] and np.load(tmp_path / "foo").shape == (3, 6)


def test_non_finite_predictions_are_one_line_and_never_written(files, tmp_path, capsys, monkeypatch):
    from bigntk.completion import NTKCompleter

    def nan_predictions(self, columns=None):
        raise FloatingPointError("the NTK predictions are not finite; rescale Y or use dtype='float64'")

    monkeypatch.setattr(NTKCompleter, "predict", nan_predictions)
    Y = np.load(files / "Y.npy")
    Y[0, 0] = np.nan
    np.save(tmp_path / "Y.npy", Y)
    rc = main(["complete", str(tmp_path / "Y.npy"), "--prior", str(files / "Z.npy"), "--out",
               str(tmp_path / "o.npy"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not finite" in err[0] and "unexpected" not in err[0]
    assert not (tmp_path / "o.npy").exists()


def test_batch_reports_each_failing_image_and_goes_on(files, tmp_path, capsys):
    import shutil

    for d in ("imgs", "masks"):
        (tmp_path / d).mkdir()
    for stem in "ac":
        shutil.copy(files / "in.png", tmp_path / "imgs" / f"{stem}.png")
    shutil.copy(files / "bad.png", tmp_path / "imgs" / "b.png")
    for stem in "abc":
        shutil.copy(files / "m.png", tmp_path / "masks" / f"{stem}.png")
    rc = main(["inpaint", "--batch", str(tmp_path / "imgs"), "--mask-dir", str(tmp_path / "masks"), "--out",
               str(tmp_path / "res"), "--method", "biharmonic", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 2 and [line.split(":")[0] for line in out.strip().splitlines()] == ["a.png", "c.png"]
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("b.png: error:") and "not a readable .png" in lines[0]
    assert "1 of 3 images failed (b.png)" in lines[1]
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["a.json", "a.png", "c.json", "c.png"]


@pytest.mark.parametrize("make,err,match", [
    (lambda: CVSettings(folds=1).validate("mean"), ValueError, "folds must be an integer >= 2"),
    (lambda: CVSettings(scheme="loo").validate("mean"), ValueError, "unknown scheme"),
    (lambda: CVSettings(refit="never").validate("ntk"), ValueError, "refit"),
    (lambda: bigntk.inpaint(np.ones((8, 8)), np.eye(8) == 0, method="cntk", levels=0), ValueError, "levels must be"),
    (lambda: bigntk.inpaint(np.ones((8, 8)), np.eye(8) == 0, method="dip", levels=1, iterations=0), ValueError,
     "iterations"),
    (lambda: bigntk.inpaint(np.ones((8, 8)), np.eye(8) == 0, method="cntk", levels=24), MemoryError, "fewer levels"),
    (lambda: bigntk.inpaint(np.ones((8, 8)), np.eye(8) == 0, method="cntk", levels=1, ridge=-1.0), ValueError,
     "ridge"),
    (lambda: bigntk.complete(*_small()[:2], _small()[2] * 1e200, progress=False), ValueError, "rescale the prior"),
    (lambda: bigntk.complete(*_small()[:2], _small()[2] * np.nan, progress=False), ValueError, "NaN"),
])
def test_api_rejects_hostile_inputs_before_computing(make, err, match):
    with pytest.raises(err, match=match):
        make()
