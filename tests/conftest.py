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
