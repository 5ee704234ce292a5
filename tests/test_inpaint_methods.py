"""Inpainting methods end to end on small images: biharmonic, dip, cntk (direct), and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bigntk.apps.inpaint import io, masks
from bigntk.apps.inpaint.report import REPORT_KEYS
from bigntk import inpaint
from bigntk.apps.inpaint import inpaint_with_report


def smooth_rgb(H: int = 32, W: int = 32) -> np.ndarray:
    """A smooth colour image (low-frequency sinusoids) in [0.1, 0.9]."""
    y, x = np.mgrid[0:H, 0:W] / max(H, W)
    chans = [np.sin(2 * np.pi * (0.7 * x + 0.3 * y)), np.cos(2 * np.pi * (0.4 * x - 0.8 * y)),
             np.sin(2 * np.pi * (x * y + 0.2))]
    return (0.5 + 0.4 * np.stack(chans, axis=-1)).astype(np.float32)


def mean_fill(img: np.ndarray, obs: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[~obs] = img[obs].mean(axis=0)
    return out


def test_biharmonic_keeps_observed_and_beats_mean_fill():
    img = smooth_rgb()
    obs = masks.random_missing(img.shape, 0.5, seed=1) & masks.center_hole(img.shape, 6)
    out, rep = inpaint_with_report(img, obs, method="biharmonic", truth=img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.array_equal(out[obs], img[obs])
    assert set(REPORT_KEYS) <= set(rep) and rep["method"] == "biharmonic"
    from bigntk.apps.inpaint.metrics import psnr
    assert rep["psnr"] > psnr(img, mean_fill(img, obs)) + 5


def test_marker_input_and_grey_image():
    img = smooth_rgb()[..., 0]
    raw = io.from_float01(img, "uint8")
    raw[10:14, 10:14] = 0
    out = inpaint(raw, marker=0, method="biharmonic")
    assert out.shape == img.shape
    assert np.abs(out[10:14, 10:14] - img[10:14, 10:14]).max() < 0.1



def test_dip_trains_and_keeps_observed(one_thread):
    img = smooth_rgb(8, 8)
    obs = masks.center_hole(img.shape, 2)
    out, rep = inpaint_with_report(img, obs, method="dip", levels=2, width=8, iterations=25, lr=0.02,
                       progress=False)
    assert np.array_equal(out[obs], img[obs]) and 0 <= out.min() and out.max() <= 1
    assert rep["info"]["final_loss"] < rep["info"]["first_loss"]


def test_cntk_direct_keeps_observed_and_beats_mean_fill(tmp_path):
    pytest.importorskip("bigntk.kernels.cntk")
    img = smooth_rgb(32, 32)
    obs = masks.random_missing(img.shape, 0.5, seed=2)
    obs &= masks.center_hole(img.shape, 5)
    out, rep = inpaint_with_report(img, obs, method="cntk", levels=3, solver="direct", cache_dir=tmp_path,
                       truth=img, progress=False)
    assert np.array_equal(out[obs], img[obs])
    from bigntk.apps.inpaint.metrics import psnr
    assert rep["psnr"] > psnr(img, mean_fill(img, obs)) + 5
    assert rep["info"]["solver"] == "direct" and rep["info"]["kernel_cached"] is False
    # a second image of the same size reuses the cached kernel
    out2, rep2 = inpaint_with_report(img[::-1].copy(), obs, method="cntk", levels=3, solver="direct",
                         cache_dir=tmp_path, progress=False)
    assert rep2["info"]["kernel_cached"] is True and rep2["info"]["kernel_store"] == rep["info"]["kernel_store"]
    # grey = one channel of the RGB solve
    grey = inpaint(img[..., 1], obs, method="cntk", levels=3, solver="direct", cache_dir=tmp_path,
                   progress=False)
    assert np.allclose(grey, out[..., 1], atol=1e-4)


def test_cli_round_trip(tmp_path):
    from bigntk.cli import main

    img = smooth_rgb(24, 40)
    obs = masks.center_hole(img.shape, 6)
    io.save_image(tmp_path / "truth.png", img)
    io.save_image(tmp_path / "in.png", io.apply_mask(img, obs))
    io.save_image(tmp_path / "mask.png", obs.astype(np.float32))
    rc = main(["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
               "--truth", str(tmp_path / "truth.png"), "--out", str(tmp_path / "out.png"),
               "--report", str(tmp_path / "r.json"), "--method", "biharmonic", "--quiet"])
    assert rc == 0
    out, _ = io.load_image(tmp_path / "out.png")
    truth, _ = io.load_image(tmp_path / "truth.png")
    assert np.array_equal(out[obs], truth[obs])
    rep = json.loads((tmp_path / "r.json").read_text())
    assert set(REPORT_KEYS) <= set(rep) and rep["psnr"] > 30 and rep["psnr_missing"] < rep["psnr"]
    # batch mode over a folder, flipped mask convention
    (tmp_path / "imgs").mkdir()
    (tmp_path / "masks").mkdir()
    io.save_image(tmp_path / "imgs" / "a.png", img)
    io.save_image(tmp_path / "masks" / "a.png", (~obs).astype(np.float32))
    rc = main(["inpaint", "--batch", str(tmp_path / "imgs"), "--mask-dir", str(tmp_path / "masks"),
               "--mask-missing-value", "nonzero", "--out", str(tmp_path / "res"), "--method",
               "biharmonic", "--quiet"])
    assert rc == 0 and (tmp_path / "res" / "a.png").is_file() and (tmp_path / "res" / "a.json").is_file()
    # errors are reported, not raised
    assert main(["inpaint", str(tmp_path / "nope.png"), "--mask", "x.png", "--out", "o.png"]) == 2


def test_cntk_pads_odd_sizes_and_warns_on_shallow_depth(tmp_path):
    pytest.importorskip("bigntk.kernels.cntk")
    from bigntk.apps.inpaint.geometry import DepthWarning

    img = smooth_rgb(28, 30)[..., 0]
    obs = masks.center_hole(img.shape, 9)  # needs ⌊log2(10)⌋ = 3 levels
    with pytest.warns(DepthWarning, match="levels >= 3"):
        out, rep = inpaint_with_report(img, obs, method="cntk", levels=2, solver="direct", cache_dir=tmp_path,
                           progress=False)
    assert out.shape == (28, 30) and np.array_equal(out[obs], img[obs])
    assert rep["depth"]["min_levels"] == 3 and not rep["depth"]["levels_ok"]
    assert np.isfinite(out).all() and np.abs(out[~obs] - img[~obs]).mean() < 0.2


def test_dip_default_settings_actually_fit(one_thread):
    # Regression: with PyTorch's default conv init and lr 0.01 the sigmoid saturated within a few steps
    # and the loss never moved again; He init and lr 1e-3 (the defaults) fit the observed pixels.
    img = smooth_rgb(32, 32)
    obs = masks.random_missing(img.shape, 0.3, seed=1)
    out, rep = inpaint_with_report(img, obs, method="dip", levels=3, width=16, iterations=150, truth=img,
                       progress=False)
    assert rep["info"]["final_loss"] < 0.1 * rep["info"]["first_loss"], rep["info"]
    from bigntk.apps.inpaint.metrics import psnr
    assert rep["psnr"] > psnr(img, mean_fill(img, obs)) + 3


@pytest.mark.parametrize("prior,array", [("stationary", "C_window"), ("meshgrid", "K")])
def test_damaged_cache_entry_is_rebuilt_and_reported_as_built(tmp_path, prior, array):
    from pathlib import Path

    img = smooth_rgb(16, 16)
    obs = masks.random_missing(img.shape, 0.4, seed=3)
    kw = dict(method="cntk", levels=2, solver="direct", prior=prior, cache_dir=tmp_path, progress=False)
    ref, rep = inpaint_with_report(img, obs, **kw)
    assert rep["info"]["kernel_cached"] is False
    store = Path(rep["info"]["kernel_store"])
    next(p for p in (store / array / "c").rglob("*") if p.is_file()).unlink()  # a deleted cache chunk
    with pytest.warns(RuntimeWarning, match="damaged"):
        out, rep2 = inpaint_with_report(img, obs, **kw)
    assert rep2["info"]["kernel_cached"] is False and np.array_equal(out, ref)
    out3, rep3 = inpaint_with_report(img, obs, **kw)
    assert rep3["info"]["kernel_cached"] is True and np.array_equal(out3, ref)


def test_nan_at_an_observed_pixel_is_an_error_and_a_non_finite_result_is_never_returned(tmp_path, monkeypatch):
    img = smooth_rgb(16, 16)
    obs = masks.center_hole(img.shape, 4)
    bad = img.copy()
    bad[2, 3, 1] = np.nan  # one NaN at an observed pixel (it turned every filled pixel black)
    with pytest.raises(ValueError, match="NaN or inf at 1 observed pixel.*row 2, column 3"):
        inpaint(bad, obs, method="cntk", levels=2, solver="direct", cache_dir=tmp_path, progress=False)
    bad[2, 3] = np.nan  # the same pixel marked missing: fine
    obs2 = obs.copy()
    obs2[2, 3] = False
    assert np.isfinite(inpaint(bad, obs2, method="biharmonic")).all()
    from bigntk.apps.inpaint.methods import biharmonic

    monkeypatch.setattr(biharmonic, "fill", lambda image, observed: (np.full_like(image, np.nan), {}))
    with pytest.raises(RuntimeError, match="non-finite"):
        inpaint(img, obs, method="biharmonic")
    from bigntk.cli import main

    io.save_image(tmp_path / "in.png", img)
    io.save_image(tmp_path / "m.png", obs.astype(np.float32))
    assert main(["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "m.png"), "--method", "biharmonic",
                 "--out", str(tmp_path / "out.png")]) == 2
    assert not (tmp_path / "out.png").exists()


def test_inverted_mask_is_warned_about_and_missing_is_the_explicit_alternative():
    from bigntk.apps.inpaint.pipeline import MaskWarning

    img = smooth_rgb(32, 32)
    holes = ~masks.center_hole(img.shape, 6)  # scikit-image convention: True = missing (3.5 % of pixels)
    with pytest.warns(MaskWarning, match="missing="):
        inpaint(img, holes, method="biharmonic")
    a = inpaint(img, missing=holes, method="biharmonic")
    b = inpaint(img, ~holes, method="biharmonic")
    assert np.array_equal(a, b) and np.array_equal(a[~holes], img[~holes])
    with pytest.raises(ValueError, match="exactly one of"):
        inpaint(img, ~holes, missing=holes, method="biharmonic")


def test_unknown_method_option_is_an_error():
    img = smooth_rgb(16, 16)
    obs = masks.center_hole(img.shape, 4)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['widht'\] for method 'dip'"):
        inpaint(img, obs, method="dip", levels=2, widht=8)
    with pytest.raises(ValueError, match="for method 'biharmonic'"):
        inpaint(img, obs, method="biharmonic", tol=1e-3)
    with pytest.raises(ValueError, match="for method 'cntk'"):
        inpaint(img, obs, method="cntk", levels=2, tolerance=1e-3)


def test_hole_at_the_left_border_is_filled_from_its_own_side(tmp_path):
    # 0 -> 1 gradient, a hole touching the left border. The circular kernel on the image grid alone
    # ("periodic") fills it from the right border too (measured: mean 0.371, truth 0.043, biharmonic
    # 0.051); the default open boundary fills it from its own side (measured: 0.112).
    H, W = 64, 128
    img = np.repeat(np.linspace(0, 1, W, dtype=np.float32)[None], H, 0)
    obs = np.ones((H, W), bool)
    obs[16:48, :12] = False
    kw = dict(method="cntk", levels=5, cache_dir=tmp_path, progress=False)
    truth = float(img[~obs].mean())
    open_ = float(inpaint(img, obs, **kw)[~obs].mean())
    periodic = float(inpaint(img, obs, boundary="periodic", **kw)[~obs].mean())
    nearest_observed = float(img[0, 12])  # 0.094: the observed column next to the hole
    assert truth == pytest.approx(0.0433, abs=1e-3)
    assert periodic > 0.3  # the wrap: right-border values leak in
    assert open_ < 0.15 and abs(open_ - truth) < 0.25 * abs(periodic - truth)
    assert abs(open_ - nearest_observed) < 0.05


def test_cache_entry_with_lost_metadata_is_rebuilt(tmp_path):
    from pathlib import Path

    img = smooth_rgb(16, 16)
    obs = masks.random_missing(img.shape, 0.4, seed=3)
    kw = dict(method="cntk", levels=2, solver="direct", cache_dir=tmp_path, progress=False)
    ref, rep = inpaint_with_report(img, obs, **kw)
    (Path(rep["info"]["kernel_store"]) / "zarr.json").unlink()  # the entry's group metadata is gone
    with pytest.warns(RuntimeWarning, match="damaged"):
        out, rep2 = inpaint_with_report(img, obs, **kw)
    assert np.array_equal(out, ref) and rep2["info"]["kernel_cached"] is False


def test_cntk_cg_default_solve_matches_a_tight_direct_solve_and_reports_iterations(tmp_path):
    # the default inpaint CG (float32 inner CG capped at max_inner, flexible outer β, tol 1e-3) against
    # the Cholesky solve of the same system: the fill differs by far less than the 0.02 dB we guard
    pytest.importorskip("bigntk.kernels.cntk")
    img = smooth_rgb(24, 40)
    obs = masks.random_missing(img.shape, 0.3, seed=3)
    obs[6:14, 12:24] = False
    kw = dict(method="cntk", levels=3, cache_dir=tmp_path, truth=img, progress=False)
    _, ref = inpaint_with_report(img, obs, solver="direct", **kw)
    out, rep = inpaint_with_report(img, obs, solver="cg", **kw)
    info = rep["info"]
    assert info["preconditioner"] == "MaskedCirculantPreconditioner"
    assert 1 <= info["iterations"] <= 12 and info["final"]["rel_residual"] < 1e-3
    assert len(info["inner_iterations"]) == info["iterations"] + 1 == len(info["inner_residuals"])
    assert all(0 < it <= 150 for it in info["inner_iterations"]) and max(info["inner_residuals"]) < 1e-2
    assert abs(rep["psnr_missing"] - ref["psnr_missing"]) < 0.02
    assert np.array_equal(out[obs], img[obs])
