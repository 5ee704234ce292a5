"""``bigntk lowrank``: round trips through .npy and zarr (bare arrays in, a zarr v3 group out that
xarray opens), atomic writes, errors reported with exit code 2."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from bigntk.cli import main


@pytest.fixture()
def problem(tmp_path):
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((30, 2)) @ rng.standard_normal((2, 24))
    mask = rng.random(Y.shape) < 0.6
    Y_in = Y.copy()
    Y_in[~mask] = np.nan
    np.save(tmp_path / "Y.npy", Y_in)
    np.save(tmp_path / "M.npy", mask)
    return Y, mask, tmp_path


@pytest.mark.parametrize("method,extra", [
    ("linrfm", ["--alpha", "1", "--max-iter", "80"]),
    ("linrfm", ["--alpha", "0.5", "--max-iter", "80"]),
    ("als", ["--rank", "2", "--max-iter", "50"]),
    ("gd", ["--rank", "2", "--max-iter", "150"]),
])
def test_cli_npy_round_trip(problem, method, extra, capsys):
    Y, mask, tmp = problem
    out = tmp / "out" / "Yhat.npy"
    rc = main(["lowrank", str(tmp / "Y.npy"), "--mask", str(tmp / "M.npy"), "--method", method,
               "--out", str(out), "--quiet", *extra])
    assert rc == 0
    Yhat = np.load(out)
    assert Yhat.shape == Y.shape
    np.testing.assert_array_equal(Yhat[mask], Y[mask])
    assert float(((Yhat - Y)[~mask] ** 2).mean()) < 1e-3 * float((Y**2).mean())
    assert method in capsys.readouterr().out


def test_cli_zarr_in_and_out_without_mask(problem):
    Y, mask, tmp = problem
    Y_in = np.load(tmp / "Y.npy")
    zarr.open_array(str(tmp / "Y.zarr"), mode="w", shape=Y_in.shape, dtype="f8")[...] = Y_in
    rc = main(["lowrank", str(tmp / "Y.zarr"), "--method", "softimpute", "--max-iter", "40",
               "--out", str(tmp / "Yhat.zarr"), "--quiet"])  # mask from the NaNs
    assert rc == 0
    Yhat = np.asarray(zarr.open_group(str(tmp / "Yhat.zarr"), mode="r")["completed"][...])
    np.testing.assert_array_equal(Yhat[mask], Y[mask])
    assert np.isfinite(Yhat).all()


def test_cli_reports_bad_input(problem, capsys):
    _, _, tmp = problem
    np.save(tmp / "bad_mask.npy", np.ones((3, 3), bool))
    rc = main(["lowrank", str(tmp / "Y.npy"), "--mask", str(tmp / "bad_mask.npy"), "--out",
               str(tmp / "x.npy"), "--quiet"])
    assert rc == 2
    assert "does not match" in capsys.readouterr().err
    rc = main(["lowrank", str(tmp / "missing.npy"), "--out", str(tmp / "x.npy")])
    assert rc == 2
    assert not (tmp / "x.npy").exists()


def test_cli_passes_momentum_and_schedule(tmp_path):
    """The acceleration knobs reach lin-RFM: plain decay without momentum is a different iteration."""
    import numpy as np
    from bigntk.cli import main

    rng = np.random.default_rng(0)
    Y = rng.standard_normal((40, 2)) @ rng.standard_normal((2, 30))
    mask = rng.random(Y.shape) < 0.5
    np.save(tmp_path / "Y.npy", np.where(mask, Y, np.nan))
    outs = []
    for extra in ([], ["--momentum", "0", "--reg-schedule", "decay"]):
        out = tmp_path / f"o{len(outs)}.npy"
        assert main(["lowrank", str(tmp_path / "Y.npy"), "--out", str(out), "--max-iter", "30", "--quiet", *extra]) == 0
        outs.append(np.load(out))
    np.testing.assert_array_equal(outs[0][mask], Y[mask])
    assert not np.allclose(outs[0], outs[1])
    assert main(["lowrank", str(tmp_path / "Y.npy"), "--out", str(tmp_path / "bad.npy"), "--momentum", "1.5", "--quiet"]) == 2


def test_cli_zarr_output_is_an_xarray_dataset(problem):
    xr = pytest.importorskip("xarray")
    Y, mask, tmp = problem
    out = tmp / "res" / "Yhat.zarr"
    rc = main(["lowrank", str(tmp / "Y.npy"), "--mask", str(tmp / "M.npy"), "--alpha", "1", "--max-iter", "60",
               "--out", str(out), "--quiet"])
    assert rc == 0
    ds = xr.open_zarr(out)
    assert ds["completed"].dims == ("row", "column") and ds["observed"].dims == ("row", "column")
    assert ds["completed"].dtype == np.float64 and ds["observed"].dtype == bool
    completed = ds["completed"].values
    np.testing.assert_array_equal(ds["observed"].values, mask)
    np.testing.assert_array_equal(completed[mask], Y[mask])
    assert float(((completed - Y)[~mask] ** 2).mean()) < 1e-3 * float((Y**2).mean())
    assert ds.attrs["method"] == "linrfm" and ds.attrs["params"]["alpha"] == 1.0
    assert ds.attrs["params"]["max_iter"] == 60 and ds.attrs["n_iter"] <= 60
    group = zarr.open_group(str(out), mode="r")  # plain zarr reads it too
    assert sorted(group.array_keys()) == ["completed", "observed"]
    assert group["completed"].metadata.dimension_names == ("row", "column")
    np.testing.assert_array_equal(group["completed"][...], completed)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_cli_reads_a_group_its_observed_mask_and_named_arrays(problem):
    Y, mask, tmp = problem
    out = tmp / "first.zarr"
    assert main(["lowrank", str(tmp / "Y.npy"), "--mask", str(tmp / "M.npy"), "--method", "als", "--rank", "2",
                 "--max-iter", "30", "--out", str(out), "--quiet"]) == 0
    again = tmp / "again.npy"  # group in: 'completed' as Y, 'observed' as the default mask
    assert main(["lowrank", str(out), "--method", "als", "--rank", "2", "--max-iter", "30",
                 "--out", str(again), "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(again)[mask], Y[mask])
    from bigntk.cli.lowrank import load_array

    np.testing.assert_array_equal(load_array(out / "observed"), mask)  # a named array of the group
    np.testing.assert_array_equal(load_array(out), zarr.open_group(str(out))["completed"][...])
    g = zarr.open_group(str(tmp / "two.zarr"), mode="w")
    for name in ("a", "b"):
        g.create_array(name, shape=(2, 2), dtype="f8")
    with pytest.raises(ValueError, match="no 'completed'"):
        load_array(tmp / "two.zarr")


@pytest.mark.parametrize("suffix", [".npy", ".zarr"])
def test_failed_write_leaves_the_previous_output_and_no_partial_file(problem, monkeypatch, suffix):
    from bigntk.cli import _output
    from bigntk.cli import lowrank as cli

    _, mask, tmp = problem
    target = tmp / f"out{suffix}"
    first = np.ones(mask.shape)
    _output.save_output(target, first, mask, {"method": "first"})

    def broken_save(f, array):  # writes part of the data, then the disk is full
        f.write(b"\x93NUMPY")
        raise OSError(28, "No space left on device")

    def full_disk(*args, **kwargs):  # the zarr arrays are written, the metadata is not
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", broken_save)
    monkeypatch.setattr(zarr, "consolidate_metadata", full_disk)
    with pytest.raises(OSError, match="No space"):
        _output.save_output(target, np.zeros(mask.shape), mask, {"method": "second"})
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".")) == []
    np.testing.assert_array_equal(cli.load_array(target), first)  # the previous output, intact
    fresh = tmp / f"fresh{suffix}"
    with pytest.raises(OSError):
        _output.save_output(fresh, np.zeros(mask.shape), mask, {})
    assert not fresh.exists()  # nothing at all rather than a partial or 0-byte output
