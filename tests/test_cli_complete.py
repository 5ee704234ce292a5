"""The `bigntk complete` and `bigntk demo` commands, run as a user would."""
import json
import subprocess
import sys

import numpy as np

from bigntk.cli import main


def test_complete_cli_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((6, 40))
    Y = np.maximum(rng.standard_normal((5, 6)) @ Z, 0)
    mask = rng.random(Y.shape) < 0.7
    np.save(tmp_path / "Y.npy", np.where(mask, Y, np.nan))
    np.save(tmp_path / "M.npy", mask)
    np.save(tmp_path / "Z.npy", Z)
    rc = main(["complete", str(tmp_path / "Y.npy"), "--mask", str(tmp_path / "M.npy"), "--prior",
               str(tmp_path / "Z.npy"), "--out", str(tmp_path / "Yhat.npy"), "--ridge", "1e-3", "--quiet"])
    assert rc == 0
    Yhat = np.load(tmp_path / "Yhat.npy")
    assert Yhat.shape == Y.shape and np.isfinite(Yhat).all()
    np.testing.assert_array_equal(Yhat[mask], Y[mask])
    # without --mask the finite entries are the observed ones: same answer
    rc = main(["complete", str(tmp_path / "Y.npy"), "--prior", str(tmp_path / "Z.npy"),
               "--out", str(tmp_path / "Yhat2.npy"), "--ridge", "1e-3", "--quiet"])
    assert rc == 0
    np.testing.assert_allclose(np.load(tmp_path / "Yhat2.npy"), Yhat)


def test_complete_cli_reports_errors(tmp_path, capsys):
    np.save(tmp_path / "Y.npy", np.ones((3, 4)))
    np.save(tmp_path / "Z.npy", np.ones((2, 5)))
    rc = main(["complete", str(tmp_path / "Y.npy"), "--prior", str(tmp_path / "Z.npy"), "--out", str(tmp_path / "o.npy")])
    assert rc == 2
    assert "prior describes 5 columns" in capsys.readouterr().err


def test_python_m_bigntk_demo_cmap_part(tmp_path):
    """The drug-screening part of the demo: generated data, NTK beats the mean over the cell type."""
    out = subprocess.run([sys.executable, "-m", "bigntk", "demo", "--parts", "cmap", "--quiet", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "held-out Pearson r" in out.stdout
    res = json.loads((tmp_path / "demo.json").read_text())["cmap"]
    assert res["ntk"]["pearson_r"] > res["mean"]["pearson_r"]
    assert res["ntk"]["mean_r2"] > res["mean"]["mean_r2"]
    assert (tmp_path / "cmap_obs.zarr").is_dir()
