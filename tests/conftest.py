"""Shared fixtures: the read-only real data beside the checkout, and the gpu marker."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("BIGNTK_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data``; tests using it skip cleanly when it is absent."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(autouse=True)
def _cpu_default(monkeypatch):
    """Run the CPU suite on the CPU even on a CUDA machine unless a test asks otherwise."""
    if not torch.cuda.is_available():
        monkeypatch.delenv("BIGNTK_DEVICE", raising=False)
    yield


@pytest.fixture
def one_thread():
    """One torch thread for the test (threaded small ops are slower on a shared 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def make_cmap_table(tmp_path_factory):
    """make(profiles, cells, drugs, genes, sparse_max) -> the aggregated ``PairTable`` of a small generated
    CMap-shaped store (rank 4, a reference line, 2 dense lines)."""
    from bigntk.apps.cmap.synth import synthesize
    from bigntk.store import aggregate

    def make(profiles: int, cells: int, drugs: int, genes: int, sparse_max: int):
        path = tmp_path_factory.mktemp("cmap") / "s.zarr"
        st = synthesize(path, profiles=profiles, cells=cells, drugs=drugs, genes=genes, rank=4, n_dense=2,
                        sparse_max=sparse_max, dense_frac=(0.5, 0.7), chunk_rows=500, progress=False)
        return aggregate(st, progress=False)

    return make
