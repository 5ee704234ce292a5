"""A kernel matrix held in memory (small problems, tests, reference solutions)."""
from __future__ import annotations

from typing import Any

import torch

from .. import backend
from .base import KernelOperator

__all__ = ["DenseOperator"]


class DenseOperator(KernelOperator):
    """Wrap an explicit ``(n, n)`` kernel matrix ``K`` (numpy / torch / CuPy)."""

    def __init__(self, K: Any, *, device=None, dtype=None, memory_budget: int | None = None):
        dev = backend.resolve_device(device)
        dt = backend.resolve_dtype(dtype)
        Kt = backend.to_tensor(K, device=dev, dtype=dt)
        if Kt.ndim != 2 or Kt.shape[0] != Kt.shape[1]:
            raise ValueError(f"K must be a square matrix, got shape {tuple(Kt.shape)}")
        super().__init__(Kt.shape[0], device=dev, dtype=dt, memory_budget=memory_budget)
        self.K = Kt

    def _block(self, rows, cols):
        return self.K[rows][:, cols]

    def _retype(self) -> None:
        self.K = self.K.to(self.dtype)

    def diag(self) -> torch.Tensor:
        return self.K.diagonal().clone()
