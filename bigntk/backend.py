"""One place for device choice, dtype policy, threads, the memory budget and array conversion.

Every public function in bigntk that computes takes ``device=None, dtype=None`` (and where it streams,
``memory_budget=None``) and resolves them here:

* device: explicit argument > ``BIGNTK_DEVICE`` environment variable > CUDA when available > CPU.
* dtype: explicit argument > ``BIGNTK_DTYPE`` environment variable > float32.
  float64 is used internally where accuracy needs it (Gram accumulation, small solves).
* memory budget (bytes one streamed computation may hold at once, :func:`memory_budget`): explicit
  argument (an int or a string such as ``"4GB"``) > ``BIGNTK_MEMORY_BUDGET`` > a quarter of free
  memory, capped at 2 GiB on the CPU and 16 GiB on a GPU. Every operator, solver and store writer
  plans its allocations against this one number (``KernelOperator.tile_cost``).
* threads (torch CPU threads, :func:`set_threads`): explicit argument > ``BIGNTK_THREADS`` > the cores
  not busy with other work (``os.cpu_count()`` minus the 1-minute load average, at least 1). On a
  shared machine two threads fighting a busy core ran 4× slower than one thread.

Inputs may be numpy arrays, torch tensors or CuPy arrays (converted zero-copy through DLPack).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
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
    "memory_budget",
    "parse_bytes",
    "default_threads",
    "set_threads",
    "Compute",
    "compute",
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
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(dev)!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
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
        t = torch.as_tensor(np.ascontiguousarray(x))  # (negative strides are not tensors)
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


_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
          "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def parse_bytes(value: int | float | str) -> int:
    """Bytes from an int or a size string (``"512MB"``, ``"4GiB"``, ``"2e9"``); > 0 or ``ValueError``."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", value)
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"memory budget {value!r} is not a size; use e.g. 4GB, 512MiB or 2000000000")
        try:
            value = float(m.group(1)) * _UNITS[unit]
        except ValueError:
            raise ValueError(f"memory budget {value!r} is not a size; use e.g. 4GB or 512MiB") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"memory budget must be a positive number of bytes, got {value!r}")
    return int(value)


def memory_budget(device: str | torch.device | None = None, budget: int | float | str | None = None) -> int:
    """The memory budget in bytes (module docstring)."""
    if budget is None:
        budget = os.environ.get("BIGNTK_MEMORY_BUDGET") or None
    if budget is not None:
        return parse_bytes(budget)
    dev = resolve_device(device)
    cap = 2 * 2**30 if dev.type == "cpu" else 16 * 2**30
    return int(max(64 * 2**20, min(free_memory_bytes(dev) // 4, cap)))


_budget_rule = memory_budget  # for ``compute``, whose argument shadows the name


def default_threads() -> int:
    """Torch CPU threads by default: ``$BIGNTK_THREADS``, else the cores not busy with other work."""
    env = os.environ.get("BIGNTK_THREADS")
    if env:
        return _check_threads(env)
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        load = 0.0
    return int(max(1, min(cores, cores - math.floor(load + 0.5))))


def _check_threads(threads: Any) -> int:
    try:
        t = int(threads)
    except (TypeError, ValueError):
        raise ValueError(f"threads must be a positive integer, got {threads!r}") from None
    if t < 1 or str(threads).strip() not in (str(t), f"{t}.0"):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return t


def set_threads(threads: int | None = None) -> int:
    """Set the CPU threads of torch and of the BLAS / OpenMP pools numpy and scipy use (``None``:
    :func:`default_threads`); returns the number set."""
    t = default_threads() if threads is None else _check_threads(threads)
    if torch.get_num_threads() != t:
        torch.set_num_threads(t)
    from threadpoolctl import threadpool_limits

    threadpool_limits(t)  # stays in force: a limit, not a context
    return t


@dataclass(frozen=True)
class Compute:
    """Resolved compute settings: where, in which precision, with how much memory and how many threads."""

    device: torch.device
    dtype: torch.dtype
    memory_budget: int
    threads: int | None = None

    @property
    def itemsize(self) -> int:
        return torch.finfo(self.dtype).bits // 8


def compute(device: Any = None, dtype: Any = None, memory_budget: Any = None, threads: Any = None) -> Compute:
    """Resolve all four settings at once (threads are validated here, applied by :func:`set_threads`)."""
    dev = resolve_device(device)
    return Compute(dev, resolve_dtype(dtype), _budget_rule(dev, memory_budget),
                   None if threads is None else _check_threads(threads))
