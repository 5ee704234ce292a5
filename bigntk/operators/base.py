"""The kernel-operator interface: a kernel matrix you multiply, never one you store.

A :class:`KernelOperator` stands for an ``(n, n)`` symmetric positive semi-definite kernel matrix
K over ``n`` points (observed matrix columns, observed pixels, …). It only promises

* ``n`` — the number of points;
* ``block(rows, cols)`` → dense ``(len(rows), len(cols))`` tile on the compute device;
* ``diag()`` → ``(n,)`` diagonal;
* ``matmul(V, rows=None, cols=None)`` → ``K[rows, cols] @ V`` for ``V`` of shape ``(len(cols), l)``,
  streamed over tiles whose size comes from ``memory_budget`` (bytes), accumulated in float64.

Subclasses implement ``_block`` (and may override ``diag`` / ``matmul`` with something faster, as the
polyphase CNTK operator does; such operators set ``fast_matmul = True``: a product over all points
costs far less than the n² kernel entries it stands for, which solvers use to choose full-batch
steps). Design follows GPyTorch's LinearOperator and Falkon's mmv kernels.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Any

import numpy as np
import torch

from .. import backend

__all__ = ["KernelOperator", "SubOperator", "as_index", "tile_shape", "default_memory_budget"]

IndexLike = Any  # None | slice | int array / tensor / sequence


def default_memory_budget(device: torch.device) -> int:
    """The library's one budget rule (:func:`bigntk.backend.memory_budget`) for ``device``."""
    return backend.memory_budget(device)


def as_index(idx: IndexLike, n: int, device: torch.device) -> torch.Tensor:
    """Normalise an index (None = all, slice, bool mask, ints) to an int64 tensor on ``device``."""
    if idx is None:
        return torch.arange(n, device=device)
    if isinstance(idx, slice):
        return torch.arange(n, device=device)[idx]
    t = backend.to_tensor(idx, device=device) if not isinstance(idx, torch.Tensor) else idx.to(device)
    if t.dtype == torch.bool:
        if t.numel() != n:
            raise ValueError(f"boolean index has {t.numel()} entries, expected {n}")
        return torch.nonzero(t, as_tuple=False).reshape(-1)
    if t.is_floating_point():
        raise TypeError("indices must be integers, booleans or None")
    t = t.reshape(-1).to(torch.int64)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        raise IndexError(f"index out of range for an operator over n={n} points")
    return t


def tile_shape(n_rows: int, n_cols: int, n_rhs: int, budget_bytes: int, itemsize: int = 4,
               entry_bytes: int | None = None) -> tuple[int, int]:
    """Largest (row_tile, col_tile) whose tile, temporaries and products fit ``budget_bytes``.

    A tile entry costs ``entry_bytes`` while it is computed (default 4 copies in the working dtype;
    operators state their own, :attr:`KernelOperator.entry_bytes`); a tile row also holds its float64
    accumulator and product (16 bytes per right-hand side). Columns are tiled only when a full row
    strip of 1024 rows does not fit.
    """
    per_entry = int(entry_bytes or 4 * itemsize)
    entries = max(budget_bytes // per_entry, 1 << 14)
    col_tile = min(n_cols, max(256, entries // max(min(n_rows, 1024), 1)))
    row_tile = min(n_rows, max(1, entries // max(col_tile, 1)))
    row_tile = min(row_tile, max(1, (budget_bytes // 4) // max(16 * n_rhs, 1)))
    return max(row_tile, 1), max(col_tile, 1)


class KernelOperator:
    """Abstract symmetric PSD kernel over ``n`` points (see module docstring).

    Parameters
    ----------
    n : int
        Number of points.
    device, dtype : resolved through :mod:`bigntk.backend` (float32 tiles by default).
    memory_budget : int, optional
        Bytes one streamed product may use for tiles; default a quarter of free memory.
    """

    #: True when ``matmul`` over all points is much cheaper than evaluating n² entries (structured product)
    fast_matmul: bool = False
    #: working copies of one tile entry, in the operator dtype, alive while ``_block`` computes a tile
    tile_copies: int = 4

    def __init__(self, n: int, *, device=None, dtype=None, memory_budget: int | str | None = None):
        self.n = int(n)
        self.device = backend.resolve_device(device)
        self.dtype = backend.resolve_dtype(dtype)
        self.memory_budget = backend.memory_budget(self.device, memory_budget)
        #: kernel entries evaluated so far (for throughput reports)
        self.entries_evaluated = 0

    # ------------------------------------------------------------------ memory plan
    @property
    def itemsize(self) -> int:
        return torch.finfo(self.dtype).bits // 8

    @property
    def entry_bytes(self) -> int:
        """Peak bytes per tile entry while a tile is computed (the operator's cost hook)."""
        return self.tile_copies * self.itemsize

    def tile_cost(self, n_rows: int, n_cols: int, n_rhs: int = 0) -> int:
        """Bytes a (n_rows, n_cols) tile and its product with n_rhs right-hand sides hold at once."""
        return n_rows * n_cols * self.entry_bytes + n_rows * n_rhs * 16 + n_cols * n_rhs * self.itemsize

    def tile_shape(self, n_rows: int, n_cols: int, n_rhs: int = 1, budget: int | None = None) -> tuple[int, int]:
        """(row_tile, col_tile) of a streamed pass within ``budget`` (default the operator's budget)."""
        return tile_shape(n_rows, n_cols, n_rhs, int(budget or self.memory_budget), self.itemsize,
                          self.entry_bytes)

    # ------------------------------------------------------------------ interface
    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    def _block(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def block(self, rows: IndexLike = None, cols: IndexLike = None, *, dtype: torch.dtype | None = None,
              budget: int | None = None) -> torch.Tensor:
        """Dense tile ``K[rows, cols]`` (``(len(rows), len(cols))``, on device), computed in the operator's
        dtype and returned in ``dtype`` (default the operator's).

        The result itself is the caller's allocation; the temporaries of computing it stay within
        ``budget`` (default the memory budget; the tile is built in row strips when it is large).
        """
        r = as_index(rows, self.n, self.device)
        c = as_index(cols, self.n, self.device)
        self.entries_evaluated += r.numel() * c.numel()
        out_dtype = dtype or self.dtype
        step = max(1, int(budget or self.memory_budget) // max(c.numel() * self.entry_bytes, 1))
        if step >= r.numel():
            return self._block(r, c).to(self.dtype).to(out_dtype)
        out = torch.empty(r.numel(), c.numel(), dtype=out_dtype, device=self.device)
        for i in range(0, r.numel(), step):
            out[i : i + step] = self._block(r[i : i + step], c).to(self.dtype)
        return out

    def diag(self) -> torch.Tensor:
        """Diagonal ``K[i, i]`` as an ``(n,)`` tensor (default: evaluated in small diagonal tiles)."""
        out = torch.empty(self.n, dtype=self.dtype, device=self.device)
        step = 1024
        for s in range(0, self.n, step):
            idx = torch.arange(s, min(s + step, self.n), device=self.device)
            out[s : s + step] = self._block(idx, idx).diagonal().to(self.dtype)
        return out

    def to_dense(self) -> torch.Tensor:
        """The whole matrix (small problems and tests only)."""
        return self.block(None, None)

    def matmul(self, V: Any, rows: IndexLike = None, cols: IndexLike = None, *, progress: bool = False) -> torch.Tensor:
        """``K[rows, cols] @ V`` streamed over tiles; returns float64 ``(len(rows), l)`` (or ``(len(rows),)``).

        ``V`` is ``(len(cols),)`` or ``(len(cols), l)`` (numpy / torch / CuPy). Each tile is computed in
        the operator dtype, multiplied in that dtype and accumulated in float64. Tile products take a
        ``V`` already in the working dtype as it is (the same numbers they multiply by after rounding a
        float64 ``V``): a caller making many products with one ``V`` rounds it once.
        """
        r = as_index(rows, self.n, self.device)
        c = as_index(cols, self.n, self.device)
        Vt, squeeze = self._rhs(V, c)
        out = self._matmul(r, c, Vt)
        return out[:, 0] if squeeze else out

    @property
    def tile_products(self) -> bool:
        """True when products are sums of ``_block`` tiles (the base ``_matmul``), not a fast or sharded product."""
        return type(self)._matmul is KernelOperator._matmul

    def _rhs(self, V: Any, c: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """((len(c), l) right-hand sides on the device — float64, or V itself when it is a tensor in the
        working dtype and the product is made of tiles — and whether V was a vector)."""
        keep = (self.tile_products and isinstance(V, torch.Tensor) and V.dtype == self.dtype
                and V.device == self.device and V.is_contiguous())  # a GEMM's rounding follows the layout
        Vt = V if keep else backend.to_tensor(V, device=self.device, dtype=backend.ACCUM_DTYPE)
        squeeze = Vt.ndim == 1
        if squeeze:
            Vt = Vt[:, None]
        if Vt.shape[0] != c.numel():
            raise ValueError(f"V has {Vt.shape[0]} rows but {c.numel()} columns were selected")
        return Vt, squeeze

    def matmul_with_columns(self, V: Any, rows: IndexLike, cols: IndexLike, keep: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``K[rows, cols] @ V`` as :meth:`matmul`, and the block ``K[rows, cols[keep]]`` read off the same
        tiles (working dtype, ``(len(rows), len(keep))``; ``keep`` ascending positions among ``cols``).

        EigenPro's step needs both K_{B,·} α and K_{B,S}: the subsample S is among the columns, so its
        block costs nothing more. The block is None where the product is not made of tiles (a fast
        or a sharded product); the caller then computes what it needs itself.
        """
        if not self.tile_products:
            return self.matmul(V, rows, cols), None
        r, c = as_index(rows, self.n, self.device), as_index(cols, self.n, self.device)
        Vt, squeeze = self._rhs(V, c)
        keep = as_index(keep, c.numel(), self.device)
        if keep.numel() > 1 and bool((keep[1:] <= keep[:-1]).any()):
            raise ValueError("keep must hold ascending, distinct column positions")
        kept = torch.empty(r.numel(), keep.numel(), dtype=self.dtype, device=self.device)
        out = self._tile_products(r, c, Vt, keep, kept)
        return (out[:, 0] if squeeze else out), kept

    def _matmul(self, r: torch.Tensor, c: torch.Tensor, V64: torch.Tensor) -> torch.Tensor:
        return self._tile_products(r, c, V64)

    def _tile_products(self, r: torch.Tensor, c: torch.Tensor, V: torch.Tensor, keep: torch.Tensor | None = None,
                       kept: torch.Tensor | None = None) -> torch.Tensor:
        """Σ_j K[r, c_j] V[c_j] over tiles (float64 accumulation); copies K[r, c[keep]] into ``kept``."""
        extra = 0 if keep is None else keep.numel() * self.itemsize  # the kept block's rows
        rt, ct = self.tile_shape(r.numel(), c.numel(), V.shape[1] + extra // 16)
        out = torch.zeros(r.numel(), V.shape[1], dtype=backend.ACCUM_DTYPE, device=self.device)
        Vw = V.to(self.dtype)
        for i in range(0, r.numel(), rt):
            ri = r[i : i + rt]
            for j in range(0, c.numel(), ct):
                cj = c[j : j + ct]
                tile = self._block(ri, cj).to(self.dtype)
                self.entries_evaluated += tile.numel()
                out[i : i + rt] += (tile @ Vw[j : j + ct]).to(backend.ACCUM_DTYPE)
                if keep is not None:
                    lo, hi = (int(x) for x in torch.searchsorted(keep, torch.tensor([j, j + ct], device=keep.device)))
                    kept[i : i + rt, lo:hi] = tile[:, keep[lo:hi] - j]
        return out

    def with_dtype(self, dtype: Any) -> "KernelOperator":
        """The same kernel with tiles computed in ``dtype`` (self when it already is).

        A shallow copy sharing the compact sources; subclasses holding dtype-specific arrays convert
        them in :meth:`_retype`. Solvers that need a float64 product (CG) use it.
        """
        dt = backend.resolve_dtype(dtype)
        if dt == self.dtype:
            return self
        out = copy.copy(self)
        out.dtype = dt
        out.entries_evaluated = 0
        out._retype()
        return out

    def _retype(self) -> None:
        """Convert held dtype-specific arrays to ``self.dtype`` (after :meth:`with_dtype`)."""

    def restrict(self, idx: IndexLike) -> "SubOperator":
        """The principal sub-operator ``K[idx, idx]`` (a view; nothing is computed)."""
        return SubOperator(self, idx)

    def fingerprint(self) -> str:
        """Short content hash (class, n, a corner tile) used by checkpoints to refuse a different kernel."""
        k = min(self.n, 16)
        probe = torch.arange(k, device=self.device)
        tile = self._block(probe, probe).to(torch.float32).cpu().numpy()
        h = hashlib.sha256(f"{type(self).__name__}:{self.n}".encode())
        h.update(np.round(tile, 5).tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, device={self.device}, dtype={self.dtype})"


class SubOperator(KernelOperator):
    """``K[idx, idx]`` of a parent operator; products go through the parent (keeps fast matvecs)."""

    def __init__(self, parent: KernelOperator, idx: IndexLike):
        self.parent = parent
        self.fast_matmul = parent.fast_matmul
        self.index = as_index(idx, parent.n, parent.device)
        super().__init__(self.index.numel(), device=parent.device, dtype=parent.dtype,
                         memory_budget=parent.memory_budget)

    @property
    def entry_bytes(self) -> int:
        return self.parent.entry_bytes

    @property
    def entries_evaluated(self) -> int:  # counted on the parent, which does the work
        return self.parent.entries_evaluated

    @entries_evaluated.setter
    def entries_evaluated(self, value: int) -> None:
        if value:
            self.parent.entries_evaluated = value

    def with_dtype(self, dtype: Any) -> "SubOperator":
        parent = self.parent.with_dtype(dtype)
        return self if parent is self.parent else SubOperator(parent, self.index)

    def _block(self, rows, cols):
        return self.parent._block(self.index[rows], self.index[cols])

    def diag(self) -> torch.Tensor:
        return self.parent.diag()[self.index]

    @property
    def tile_products(self) -> bool:
        return self.parent.tile_products

    def _matmul(self, r, c, V64):
        return self.parent._matmul(self.index[r], self.index[c], V64)

    def matmul_with_columns(self, V, rows, cols, keep):
        r, c = as_index(rows, self.n, self.device), as_index(cols, self.n, self.device)
        return self.parent.matmul_with_columns(V, self.index[r], self.index[c], keep)

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.parent.fingerprint().encode())
        h.update(backend.to_numpy(self.index).tobytes())
        return h.hexdigest()[:16]
