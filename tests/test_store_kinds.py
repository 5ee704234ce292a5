"""Every store kind the library writes opens with ``xarray.open_zarr`` (named dimensions, id
coordinates) and with plain ``zarr.open``."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import zarr

xr = pytest.importorskip("xarray")


def _observations(tmp: Path) -> Path:
    from bigntk.store import ObservationWriter

    w = ObservationWriter.create(tmp / "obs.zarr", ["g0", "g1", "g2"], with_profile_ids=True,
                                 row_meta={"pr_gene_symbol": np.array(["A", "B", "C"])})
    with w:
        w.append(np.arange(12, dtype=np.float32).reshape(4, 3), ["c0", "c1", "c0", "c1"], ["d0", "d0", "d1", "d1"],
                 profile_ids=["p0", "p1", "p2", "p3"], col_meta={"pert_iname": np.array(["x", "y", "x", "y"])})
    return tmp / "obs.zarr"


def _aggregate(tmp: Path) -> Path:
    from bigntk.store import aggregate_to_store

    return aggregate_to_store(_observations(tmp), tmp / "agg.zarr", progress=False).path


def _predictions(tmp: Path) -> Path:
    from bigntk.apps.cmap.impute import impute

    return impute(_observations(tmp), tmp / "pred.zarr", method="mean", progress=False)


def _demo(tmp: Path) -> Path:
    from bigntk.apps.cmap.demo import demo_store

    return demo_store(tmp, profiles=300, cells=4, drugs=20, n_dense=1, genes=5, progress=False).path


def _kernel(form: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        from bigntk.kernels.cntk import compact_kernel, dip

        compact_kernel(dip(2), (8, 8), store=tmp / "k.zarr", form=form, block_rows=2 if form == "full" else None)
        return tmp / "k.zarr"

    return make


def _dense_cache(tmp: Path) -> Path:
    from bigntk.apps.inpaint.methods.cntk import get_kernel
    from bigntk.kernels.cntk import dip

    return Path(get_kernel(dip(2), (8, 8), prior="meshgrid", cache_dir=tmp, progress=False)[1]["kernel_store"])


def _cli_output(command: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        from bigntk.cli import main

        rng = np.random.default_rng(0)
        Y = rng.standard_normal((6, 3)) @ rng.standard_normal((3, 10))
        np.save(tmp / "Y.npy", np.where(rng.random(Y.shape) < 0.7, Y, np.nan))
        np.save(tmp / "Z.npy", rng.standard_normal((4, 10)))
        extra = ["--prior", str(tmp / "Z.npy"), "--ridge", "1e-3"] if command == "complete" else ["--max-iter", "5"]
        assert main([command, str(tmp / "Y.npy"), "--out", str(tmp / "out.zarr"), "--quiet", *extra]) == 0
        return tmp / "out.zarr"

    return make


def _checkpoint(tmp: Path) -> Path:
    from bigntk.solvers.checkpoint import save_checkpoint

    save_checkpoint(tmp / "ck.zarr", {"alpha": np.ones((3, 2)), "step": np.array([4])}, {"config_hash": "h"})
    return tmp / "ck.zarr"


#: kind -> (writer, {array: dims}, coordinates that must be attached)
KINDS = {
    "observations": (_observations, {"expression": ("profile", "gene"), "cell": ("profile",),
                                     "cell_names": ("cell_names",)}, {"profile_ids", "gene_ids", "cell_names"}),
    "aggregate": (_aggregate, {"expression": ("profile", "gene"), "replicate": ("profile",)},
                  {"gene_ids", "drug_names"}),
    "predictions": (_predictions, {"imputed": ("cell", "drug", "gene"), "observed": ("cell", "drug")},
                    {"cell", "drug", "gene"}),
    "demo": (_demo, {"expression": ("profile", "gene")}, {"gene_ids", "cell_names", "drug_names"}),
    "kernel-window": (_kernel("window"), {"C_window": ("phase_y", "phase_x", "window_y", "window_x")}, set()),
    "kernel-full": (_kernel("full"), {"C": ("phase_y", "phase_x", "offset_y", "offset_x"), "done": ("block",)}, set()),
    "kernel-dense-cache": (_dense_cache, {"K": ("pixel_row", "pixel_col")}, set()),
    "lowrank-out": (_cli_output("lowrank"), {"completed": ("row", "column"), "observed": ("row", "column")}, set()),
    "complete-out": (_cli_output("complete"), {"completed": ("row", "column"), "observed": ("row", "column")}, set()),
    "checkpoint": (_checkpoint, {"alpha": ("alpha_0", "alpha_1")}, set()),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_store_kind_opens_in_xarray_and_in_plain_zarr(tmp_path, kind):
    write, dims, coords = KINDS[kind]
    path = write(tmp_path)
    with warnings.catch_warnings():  # consolidated metadata is optional in zarr v3
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(path, consolidated=None)
    for name, want in dims.items():
        assert ds[name].dims == want, (kind, name)
    assert coords <= set(ds.coords), (kind, set(ds.coords))
    group = zarr.open(str(path), mode="r")
    assert isinstance(group, zarr.Group)
    for name in dims:
        np.testing.assert_array_equal(np.asarray(group[name][...]), ds[name].values)


def test_observation_ids_are_coordinates_as_ingested(tmp_path):
    ds = xr.open_zarr(_observations(tmp_path), consolidated=False)
    assert list(ds["profile_ids"].values) == ["p0", "p1", "p2", "p3"]
    assert list(ds["gene_ids"].values) == ["g0", "g1", "g2"]
    row = ds.set_xindex("profile_ids").sel(profile_ids="p2")["expression"].values
    np.testing.assert_array_equal(row, [6, 7, 8])
    meta = xr.open_zarr(tmp_path / "obs.zarr", group="col_meta", consolidated=False)
    assert meta["pert_iname"].dims == ("profile",)
