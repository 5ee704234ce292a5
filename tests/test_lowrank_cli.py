"""``bigntk lowrank``: round trips through .npy and zarr, errors reported with exit code 2."""
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
    Yhat = np.asarray(zarr.open_array(str(tmp / "Yhat.zarr"), mode="r")[...])
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
