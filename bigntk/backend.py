"""One place for device choice, dtype policy and array conversion.

Every public function in bigntk takes ``device=None, dtype=None`` and resolves them here:

* device: explicit argument > ``BIGNTK_DEVICE`` environment variable > CUDA when available > CPU.
* dtype: explicit argument > ``BIGNTK_DTYPE`` environment variable > float32.
  float64 is used internally where accuracy needs it (Gram accumulation, small solves).

Inputs may be numpy arrays, torch tensors or CuPy arrays (converted zero-copy through DLPack).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

__all__ = [
    "ACCUM_DTYPE",
    "resolve_device",
    "resolve_dtype",
    "to_tensor",
    "to_numpy",
    "is_cupy",
    "free_memory_bytes",
]

#: dtype used where accumulation accuracy matters (Gram matrices, Cholesky of small systems).
ACCUM_DTYPE = torch.float64

_DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "fp32": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
    "fp64": torch.float64,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return the compute device.

    Order: ``device`` argument, then ``$BIGNTK_DEVICE``, then ``cuda`` if available, else ``cpu``.
    Raises ``ValueError`` for a CUDA request on a machine without CUDA.
    """
    if device is None:
        device = os.environ.get("BIGNTK_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} requested but CUDA is not available; use device='cpu'")
    return dev


def resolve_dtype(dtype: str | torch.dtype | np.dtype | type | None = None) -> torch.dtype:
    """Return the working floating dtype (float32 unless float64 is asked for).

    Accepts torch dtypes, numpy dtypes and names (``"float32"``, ``"float64"``), and
    ``$BIGNTK_DTYPE`` when ``dtype`` is None.
    """
    if dtype is None:
        dtype = os.environ.get("BIGNTK_DTYPE", "float32")
    if isinstance(dtype, torch.dtype):
        out = dtype
    elif isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use 'float32' or 'float64'")
        out = _DTYPES[dtype]
    else:
        out = _DTYPES.get(np.dtype(dtype).name)
        if out is None:
            raise ValueError(f"unsupported dtype {dtype!r}; use float32 or float64")
    if out not in (torch.float32, torch.float64):
        raise ValueError(f"unsupported dtype {out}; use float32 or float64")
    return out


def is_cupy(x: Any) -> bool:
    """True when ``x`` is a CuPy array (checked without importing CuPy)."""
    return type(x).__module__.split(".")[0] == "cupy"


def to_tensor(
    x: Any,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> torch.Tensor:
    """Convert numpy / CuPy / torch / nested sequences to a torch tensor.

    CuPy arrays and tensors travel through DLPack (no host copy). Floating data is cast to
    ``dtype`` (resolved by :func:`resolve_dtype`); bool and integer data keep their dtype when
    ``dtype`` is None.
    """
    dev = resolve_device(device)
    if isinstance(x, torch.Tensor):
        t = x
    elif is_cupy(x):
        t = torch.from_dlpack(x)
    else:
        t = torch.as_tensor(np.asarray(x))
    if t.is_floating_point() or dtype is not None:
        t = t.to(resolve_dtype(dtype))
    return t.to(dev)


def to_numpy(x: Any) -> np.ndarray:
    """Return a host numpy array from a tensor, CuPy array or array-like."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if is_cupy(x):
        return x.get()
    return np.asarray(x)


def free_memory_bytes(device: str | torch.device | None = None) -> int:
    """Free memory on ``device`` in bytes: free GPU memory for CUDA, available RAM for CPU."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency, this is a safety net
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
