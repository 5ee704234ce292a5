"""Inpainting I/O, padding, masks, metrics and reports (no kernels needed)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from bigntk.apps.inpaint import geometry, io, masks, metrics
from bigntk.apps.inpaint.report import REPORT_KEYS, write_report


@pytest.fixture
def rgb8():
    return np.random.default_rng(0).integers(0, 256, size=(13, 17, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_uint8_rgb_round_trip(tmp_path, rgb8, suffix):
    path = io.save_image(tmp_path / f"a{suffix}", io.to_float01(rgb8))
    img, stored = io.load_image(path)
    assert stored == np.uint8 and img.shape == (13, 17, 3) and img.dtype == np.float32
    assert np.array_equal(io.from_float01(img, "uint8"), rgb8)


def test_uint16_grey_round_trip(tmp_path):
    g = np.random.default_rng(1).integers(0, 65536, size=(9, 11), dtype=np.uint16)
    path = io.save_image(tmp_path / "g.png", io.to_float01(g), "uint16")
    img, stored = io.load_image(path)
    assert stored == np.uint16 and img.shape == (9, 11)
    assert np.array_equal(io.from_float01(img, "uint16"), g)


def test_float_npy_round_trip_and_range_check(tmp_path):
    x = np.random.default_rng(2).random((6, 5, 3)).astype(np.float32)
    img, _ = io.load_image(io.save_image(tmp_path / "x.npy", x))
    assert np.array_equal(img, x)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        io.to_float01(x * 3)


def test_mask_conventions(tmp_path):
    m = np.zeros((8, 8), dtype=np.uint8)
    m[2:5, 3:6] = 255
    io.save_image(tmp_path / "m.png", m / 255.0)
    obs = io.load_mask(tmp_path / "m.png")
    assert obs.dtype == bool and obs.sum() == 9 and obs[3, 4]
    flipped = io.load_mask(tmp_path / "m.png", nonzero_means="missing")
    assert np.array_equal(flipped, ~obs)


def test_marker_value(rgb8):
    raw = rgb8.copy()
    raw[1:3, 2:4] = 0
    raw[5, 5, 0] = 0  # one channel only: still observed
    img, obs = io.mask_from_marker(raw, 0)
    assert (~obs).sum() == 4 and obs[5, 5]
    f = io.to_float01(rgb8)
    f[0, 0] = np.nan
    _, obs2 = io.mask_from_marker(f, float("nan"))
    assert (~obs2).sum() == 1 and not obs2[0, 0]


def test_pad_and_crop():
    img = np.random.default_rng(3).random((37, 50, 3)).astype(np.float32)
    obs = np.ones((37, 50), dtype=bool)
    obs[10:20, 10:20] = False
    img_p, obs_p = geometry.pad_reflect(img, obs, levels=4)
    assert img_p.shape == (48, 64, 3) and obs_p.shape == (48, 64)
    assert not obs_p[37:].any() and not obs_p[:, 50:].any()  # padding counts as missing
    assert np.array_equal(img_p[37, :50], img[35])  # reflect (edge not repeated)
    assert np.array_equal(geometry.crop(img_p, (37, 50)), img)
    assert geometry.padded_shape((64, 64), 6) == (64, 64)
    # tiny image, large padding: reflection repeats
    small, _ = geometry.pad_reflect(img[:3, :3], obs[:3, :3], levels=3)
    assert small.shape == (8, 8, 3)


def test_depth_rule_warns():
    obs = np.ones((64, 64), dtype=bool)
    obs[10:25, 10:25] = False  # 15 × 15 hole
    assert geometry.largest_hole(obs) in (15, 16) or geometry.largest_hole(obs) == 15
    assert geometry.min_levels(15) == 4 and geometry.min_levels(1) == 1
    with pytest.warns(geometry.DepthWarning, match="levels >= 4"):
        info = geometry.check_depth(obs, levels=2)
    assert not info["levels_ok"] and info["min_levels"] == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert geometry.check_depth(obs, levels=4)["levels_ok"]


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_masks_deterministic(kind):
    kw = {"center": {"side": 10}, "random": {"fraction": 0.5}}.get(kind, {})
    seed = 0 if kind == "center" else 7
    a = masks.make_mask(kind, (64, 96), seed=seed, **kw)
    b = masks.make_mask(kind, (64, 96), seed=seed, **kw)
    assert a.dtype == bool and a.shape == (64, 96) and np.array_equal(a, b)
    assert 0 < (~a).sum() < a.size
    if kind not in ("center",):
        assert not np.array_equal(a, masks.make_mask(kind, (64, 96), seed=seed + 1, **kw))
    if kind == "random":
        assert abs((~a).mean() - 0.5) < 0.05


def test_metrics():
    rng = np.random.default_rng(4)
    t = 0.9 * rng.random((32, 32, 3))
    assert metrics.psnr(t, t) == np.inf or metrics.psnr(t, t) > 100
    noisy = np.clip(t + 0.1 * rng.standard_normal(t.shape), 0, 1)
    mse = np.mean((noisy - t) ** 2)
    assert metrics.psnr(t, noisy) == pytest.approx(10 * np.log10(1 / mse), rel=1e-6)
    assert 0 < metrics.ssim(t, noisy) < metrics.ssim(t, t) == pytest.approx(1.0)
    obs = np.ones((32, 32), dtype=bool)
    obs[:8] = False
    pred = t.copy()
    pred[:8] += 0.05
    assert metrics.psnr_missing(t, pred, obs) == pytest.approx(10 * np.log10(1 / 0.05 ** 2), rel=1e-6)
    assert metrics.psnr(t, pred) > metrics.psnr_missing(t, pred, obs)
    assert metrics.psnr_missing(t, pred, np.ones_like(obs)) is None
    assert metrics.peak_rss_gb() > 0.01


def test_report_keys(tmp_path):
    with pytest.raises(ValueError, match="lacks keys"):
        write_report(tmp_path / "r.json", {"method": "x"})
    rep = {k: None for k in REPORT_KEYS} | {"method": "biharmonic", "psnr": float("inf"),
                                             "settings": {"a": np.float32(1.5), "p": tmp_path}}
    data = json.loads(write_report(tmp_path / "r.json", rep).read_text())
    assert set(REPORT_KEYS) <= set(data) and data["psnr"] is None and data["settings"]["a"] == 1.5


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_uint16_rgb_round_trip_keeps_16_bits(tmp_path, suffix):
    rgb16 = np.random.default_rng(5).integers(0, 65536, size=(9, 11, 3), dtype=np.uint16)
    path = io.save_image(tmp_path / f"c{suffix}", io.to_float01(rgb16), "uint16")
    img, stored = io.load_image(path)
    assert stored == np.uint16 and img.shape == (9, 11, 3)
    assert np.array_equal(io.from_float01(img, "uint16"), rgb16)  # not reduced to 8 bits


def test_cli_16_bit_rgb_in_gives_16_bit_rgb_out(tmp_path):
    from bigntk.cli import main

    y, x = np.mgrid[0:24, 0:32] / 32.0
    rgb = np.stack([x, y, 0.5 * (x + y)], axis=-1)
    rgb16 = np.round(rgb * 65535).astype(np.uint16)
    obs = masks.center_hole((24, 32), 6)
    io.save_image(tmp_path / "in.png", io.to_float01(rgb16), "uint16")
    io.save_image(tmp_path / "m.png", obs.astype(np.float32))
    assert main(["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "m.png"), "--method", "biharmonic",
                 "--out", str(tmp_path / "out.png"), "--quiet"]) == 0
    raw = io.read_raw(tmp_path / "out.png")
    assert raw.dtype == np.uint16 and raw.shape == (24, 32, 3)
    assert np.array_equal(raw[obs], rgb16[obs])  # observed pixels keep every bit
    assert len(np.unique(raw[..., 0] % 257)) > 1  # genuinely 16-bit values, not 8-bit ones scaled
