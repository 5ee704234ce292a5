"""Device and dtype policy, array conversion."""
import numpy as np
import pytest
import torch

import bigntk
from bigntk import backend


def test_device_resolution_order(monkeypatch):
    monkeypatch.delenv("BIGNTK_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert backend.resolve_device().type == expected
    monkeypatch.setenv("BIGNTK_DEVICE", "cpu")
    assert backend.resolve_device().type == "cpu"
    assert backend.resolve_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_request_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        backend.resolve_device("cuda")


def test_dtype_policy(monkeypatch):
    monkeypatch.delenv("BIGNTK_DTYPE", raising=False)
    assert backend.resolve_dtype() == torch.float32
    assert backend.resolve_dtype("float64") == torch.float64
    assert backend.resolve_dtype(np.float64) == torch.float64
    monkeypatch.setenv("BIGNTK_DTYPE", "float64")
    assert backend.resolve_dtype() == torch.float64
    with pytest.raises(ValueError):
        backend.resolve_dtype("int8")
    with pytest.raises(ValueError):
        backend.resolve_dtype(torch.float16)


def test_conversions_keep_values():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = backend.to_tensor(a, device="cpu")
    assert t.dtype == torch.float32 and t.shape == (2, 3)
    np.testing.assert_array_equal(backend.to_numpy(t), a)
    m = backend.to_tensor(np.array([True, False]), device="cpu")
    assert m.dtype == torch.bool
    assert backend.to_tensor(torch.ones(2, dtype=torch.float64), device="cpu", dtype="float64").dtype == torch.float64
    assert backend.free_memory_bytes("cpu") > 0


@pytest.mark.gpu
def test_completion_same_on_cpu_and_cuda():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((8, 300))
    Y = np.maximum(rng.standard_normal((20, 8)) @ Z, 0)
    mask = rng.random(Y.shape) < 0.6
    cpu = bigntk.complete(Y, mask, Z, ridge=1e-3, device="cpu", dtype="float64", progress=False)
    gpu = bigntk.complete(Y, mask, Z, ridge=1e-3, device="cuda", dtype="float64", progress=False)
    np.testing.assert_allclose(cpu, gpu, rtol=1e-8, atol=1e-8)


@pytest.mark.gpu
def test_cupy_input_via_dlpack():
    cp = pytest.importorskip("cupy")
    x = cp.arange(4, dtype=cp.float32)
    t = backend.to_tensor(x, device="cuda")
    assert t.is_cuda and t.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_set_threads_limits_torch_and_the_numpy_blas():
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from bigntk.backend import set_threads

    before_torch = torch.get_num_threads()
    with threadpool_limits(None):  # restores every pool's own setting afterwards
        assert set_threads(1) == 1
        assert torch.get_num_threads() == 1
        pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert pools and all(p["num_threads"] == 1 for p in pools)
    torch.set_num_threads(before_torch)
