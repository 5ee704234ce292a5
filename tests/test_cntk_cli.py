"""CNTK heat maps and the ``bigntk kernel`` CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bigntk.cli import main
from bigntk.kernels.cntk import compact_kernel, dense_kernel, dip
from bigntk.viz import kernel_heatmap


@pytest.mark.parametrize("prior", ["stationary", "identity", "meshgrid"])
def test_heatmap_is_the_kernel_row(prior):
    K = dense_kernel(dip(2), (8, 8), prior)
    img = kernel_heatmap(K, pixel=(3, 5), as_array=True)
    assert img.shape == (8, 8)
    assert np.allclose(img.ravel(), K[3 * 8 + 5].numpy())
    assert img[3, 5] == img.max()  # a pixel is most similar to itself (8x8, s=2)
    fig = kernel_heatmap(K, pixel=(3, 5))
    assert len(fig.axes) == 2  # image + colour bar
    ax, bar = fig.axes
    assert "row" in ax.get_ylabel() and "column" in ax.get_xlabel() and "K((i, j), (k, l))" in bar.get_ylabel()


def test_heatmap_of_compact_kernel_and_errors():
    k = compact_kernel(dip(2), (16, 16))
    img = kernel_heatmap(k, (4, 6), as_array=True, subtract_far=True)
    assert kernel_heatmap(k, (4, 6), subtract_far=True).axes[1].get_ylabel().endswith("− c_far")
    far = img[12, 14]  # far from (4, 6): exactly c_far - c_far
    assert abs(far) < 1e-6 and img[4, 6] > 0
    with pytest.raises(ValueError, match="outside"):
        kernel_heatmap(k, (16, 0), as_array=True)
    with pytest.raises(ValueError, match="image_shape"):
        kernel_heatmap(torch.eye(8), (0, 0), as_array=True)


def test_cli_build_info_heatmap(tmp_path, capsys):
    store = str(tmp_path / "k.zarr")
    assert main(["kernel", "build", "--levels", "2", "--shape", "8x8", "--form", "full", "--store", store,
                 "--quiet"]) == 0
    assert main(["kernel", "info", store, "--verify"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["shape"] == [8, 8] and info["form"] == "full" and info["null_space_dim"] == 15
    out = str(tmp_path / "row.npy")
    assert main(["kernel", "heatmap", store, "--pixel", "2,3", "--out", out]) == 0
    row = np.load(out)
    ref = compact_kernel(dip(2), (8, 8), form="full").rows([2 * 8 + 3])[0].numpy().reshape(8, 8)
    assert np.allclose(row, ref)
    png = str(tmp_path / "fig.png")
    assert main(["kernel", "heatmap", store, "--pixel", "2,3", "--out", png]) == 0
    assert (tmp_path / "fig.png").stat().st_size > 1000
    # errors are reported, not raised
    assert main(["kernel", "info", str(tmp_path / "nope.zarr")]) == 2
    assert main(["kernel", "build", "--levels", "3", "--shape", "12x12", "--store", store, "--quiet"]) == 2


def test_cli_build_repairs_a_damaged_store_and_takes_compute_options(tmp_path, capsys):
    import zarr

    store = tmp_path / "k.zarr"
    args = ["kernel", "build", "--levels", "2", "--shape", "8x8", "--form", "full", "--store", str(store),
            "--quiet", "--memory-budget", "64MB", "--threads", "1", "--dtype", "float64"]
    assert main(args) == 0 and "built" in capsys.readouterr().out
    ref = compact_kernel(dip(2), (8, 8), form="full", dtype=torch.float64).C.numpy()
    assert main(args) == 0 and "intact, reused" in capsys.readouterr().out
    g = zarr.open_group(str(store), mode="r+")
    g["C"][1, 1, 0, 0] = 123.0  # altered data: only the checksum can tell
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert main(args) == 0
    assert "built" in capsys.readouterr().out
    assert np.array_equal(zarr.open_group(str(store))["C"][...], ref)
    next(p for p in (store / "C" / "c").rglob("*") if p.is_file()).unlink()  # a deleted chunk
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert main(args) == 0
    assert np.array_equal(zarr.open_group(str(store))["C"][...], ref)
    with pytest.raises(SystemExit):
        main(args[:-6] + ["--memory-budget", "lots"])
