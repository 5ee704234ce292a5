"""A kernel operator whose points are sharded over ``dask.distributed`` workers.

The n points are split into contiguous shards (one or more per worker). Each shard is a task result
on a worker: the operator built there from its *source* — a picklable factory such as
``functools.partial(ntk_operator, prior, depth=2, memory_budget=...)`` — plus the point range the
shard owns and the coefficients last sent to it. Only the source travels once; afterwards a product
``K[B, cols] @ V`` sends each shard the batch indices B and the rows of its slice of V that changed
since its last product (EigenPro moves only the batch and the subsample per step), and returns the
shard's partial product K[B, cols ∩ shard] V[cols ∩ shard]; the client adds the parts in shard order,
in float64.

Faults: a shard is a dask future with lineage. When its worker dies, the scheduler recomputes it from
its source on another worker; its coefficient cache is then empty, the next product finds the version
mismatch and the client resends the full slice. Sums are taken in a fixed order from tiles computed by
the same code with the same budget, so a disturbed run ends with the same predictions as an undisturbed
one.

Operators with a fast product (``fast_matmul``: the polyphase CNTK, whose product over all pixels is one
GEMM) are split by *output rows* instead: every shard receives the coefficients (again only the changed
rows) and computes the band of K @ V its rows fall in, a share of the GEMM.

The operator is a :class:`~bigntk.operators.KernelOperator`: EigenPro and CG run on it unchanged.
"""
from __future__ import annotations

import functools
import itertools
import time
from typing import Any, Callable

import numpy as np
import torch

from .. import backend
from ..operators.base import KernelOperator

__all__ = ["DistributedOperator", "shard_bounds"]


def shard_bounds(n: int, n_shards: int) -> np.ndarray:
    """(n_shards + 1,) boundaries of contiguous, nearly equal point ranges."""
    if n_shards < 1:
        raise ValueError(f"need at least one shard, got {n_shards}")
    return np.linspace(0, n, min(n_shards, max(n, 1)) + 1).round().astype(np.int64)


class _Shard:
    """Lives on a worker: the source operator over all points, the owned range, the cached coefficients."""

    def __init__(self, source: Callable[[], KernelOperator], lo: int, hi: int):
        self.op = source()
        self.lo, self.hi = int(lo), int(hi)
        self.cols: torch.Tensor | None = None  # (k,) global columns of the cached slice
        self.V: torch.Tensor | None = None  # (k, l) float64 cached coefficients
        self.version = -1
        self.busy_s, self.calls = 0.0, 0  # time spent in products (for overhead reports)

    def stats(self) -> dict:
        return {"busy_s": self.busy_s, "calls": self.calls, "lo": self.lo, "hi": self.hi}

    def info(self) -> dict:
        op = self.op
        return {"n": op.n, "fast_matmul": bool(op.fast_matmul), "dtype": str(op.dtype).replace("torch.", ""),
                "entry_bytes": int(op.entry_bytes), "memory_budget": int(op.memory_budget),
                "fingerprint": op.fingerprint(), "kind": type(op).__name__}

    def diag(self) -> np.ndarray:
        return backend.to_numpy(self.op.diag()[self.lo : self.hi])

    def block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = backend.to_numpy(self.op.block(rows, cols))
        self.busy_s += time.perf_counter() - t0
        return out

    def matmul(self, rows: np.ndarray, payload: tuple, version: int) -> Any:
        """Apply the payload to the cached coefficients, then K[rows, cached cols] @ V (float64, numpy)."""
        kind = payload[0]
        dev = self.op.device
        if kind == "oneoff":  # a small product (the batch of a subsample correction): the cache stays
            _, cols, V = payload
            return backend.to_numpy(self._timed_matmul(torch.as_tensor(V, dtype=backend.ACCUM_DTYPE, device=dev),
                                                       rows, torch.as_tensor(cols, device=dev)))
        if kind == "full":
            _, cols, V = payload
            self.cols = torch.as_tensor(cols, device=dev)
            self.V = torch.as_tensor(V, dtype=backend.ACCUM_DTYPE, device=dev).clone()
        else:
            _, base, idx, vals = payload
            if self.version != base or self.V is None:
                return "stale"  # the shard was rebuilt (worker lost) or never filled: resend in full
            if len(idx):
                self.V[torch.as_tensor(idx, device=dev)] = torch.as_tensor(vals, dtype=backend.ACCUM_DTYPE, device=dev)
        self.version = version
        return backend.to_numpy(self._timed_matmul(self.V, rows, self.cols))

    def _timed_matmul(self, V: torch.Tensor, rows: np.ndarray, cols: torch.Tensor) -> torch.Tensor:
        if cols.numel() == 0:
            return torch.zeros(len(rows), V.shape[1], dtype=backend.ACCUM_DTYPE)
        t0 = time.perf_counter()
        out = self.op.matmul(V, rows=rows, cols=cols)
        self.busy_s, self.calls = self.busy_s + time.perf_counter() - t0, self.calls + 1
        return out


def _build(source: Callable[[], KernelOperator], lo: int, hi: int) -> _Shard:
    return _Shard(source, lo, hi)


def _call(shard: _Shard, method: str, *args: Any) -> Any:
    return getattr(shard, method)(*args)


class DistributedOperator(KernelOperator):
    """The operator ``source()`` with its points sharded over the workers of ``client``.

    Parameters
    ----------
    client : dask.distributed.Client
    source : picklable zero-argument callable building the operator on a worker (its memory budget is
        that worker's share: build it with an explicit ``memory_budget``).
    n : number of points of ``source()`` (asked of a worker when not given: one extra build).
    n_shards : number of shards (default: one per worker).
    device : where the client keeps coefficients and results (default: the resolved default device).
    memory_budget : the budget solvers plan batches with (default: the shards' budgets summed).
    """

    def __init__(self, client: Any, source: Callable[[], KernelOperator], *, n: int | None = None,
                 n_shards: int | None = None, device=None, memory_budget: int | None = None):
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise ValueError("the dask cluster has no workers")
        self.client, self.source = client, source
        if n is None:
            n = client.submit(lambda src: src().n, source, pure=False).result()
        self.bounds = shard_bounds(int(n), int(n_shards or len(workers)))
        self.workers = [workers[k % len(workers)] for k in range(len(self.bounds) - 1)]
        self.shards = [client.submit(_build, source, int(lo), int(hi), workers=[w], allow_other_workers=True,
                                     pure=False)
                       for lo, hi, w in zip(self.bounds[:-1], self.bounds[1:], self.workers)]
        meta = self._submit(0, "info").result()
        if meta["n"] != int(n):
            raise ValueError(f"the source builds an operator over {meta['n']} points, not n={n}")
        self.fast_matmul = meta["fast_matmul"]
        #: "cols": shards own coefficient slices (tiled kernels); "rows": shards own output bands (fast products)
        self.split = "rows" if self.fast_matmul else "cols"
        self._entry_bytes, self._fingerprint, self.source_kind = meta["entry_bytes"], meta["fingerprint"], meta["kind"]
        budget = memory_budget or meta["memory_budget"] * len(self.shards)
        super().__init__(meta["n"], device=device, dtype=meta["dtype"], memory_budget=budget)
        self._sent: list[tuple | None] = [None] * len(self.shards)  # per shard: (cols, V, version) last sent
        self._versions = itertools.count()
        self.transfer_bytes = 0  #: coefficient and index bytes sent to shards so far

    @property
    def entry_bytes(self) -> int:
        return self._entry_bytes

    def fingerprint(self) -> str:
        return self._fingerprint

    def _submit(self, k: int, method: str, *args: Any):
        return self.client.submit(_call, self.shards[k], method, *args, workers=[self.workers[k]],
                                  allow_other_workers=True, pure=False)

    def diag(self) -> torch.Tensor:
        parts = self.client.gather([self._submit(k, "diag") for k in range(len(self.shards))])
        return torch.as_tensor(np.concatenate(parts), device=self.device).to(self.dtype)

    def _owned(self, c: np.ndarray) -> list[np.ndarray]:
        """Positions in ``c`` of the columns each shard owns."""
        owner = np.searchsorted(self.bounds, c, side="right") - 1
        return [np.flatnonzero(owner == k) for k in range(len(self.shards))]

    def _block(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        r, c = backend.to_numpy(rows), backend.to_numpy(cols)
        by_rows = self.split == "rows"
        pos = self._owned(r if by_rows else c)
        futs = {k: self._submit(k, "block", r[p] if by_rows else r, c if by_rows else c[p])
                for k, p in enumerate(pos) if p.size}
        out = np.empty((len(r), len(c)), dtype=np.float32 if self.dtype == torch.float32 else np.float64)
        for k, f in futs.items():
            if by_rows:
                out[pos[k]] = f.result()
            else:
                out[:, pos[k]] = f.result()
        return torch.as_tensor(out, device=self.device)

    def _payload(self, k: int, cols_k: np.ndarray, V_k: np.ndarray, version: int) -> tuple:
        """What shard k needs: a delta against its cached coefficients when the columns are the cached
        ones; a one-off product (cache untouched) for a product over far fewer columns; else a new cache."""
        last = self._sent[k]
        if last is not None and np.array_equal(last[0], cols_k) and last[1].shape == V_k.shape:
            self._sent[k] = (cols_k, V_k, version)
            changed = np.flatnonzero((last[1] != V_k).any(axis=1))
            return ("delta", last[2], changed, V_k[changed])
        if last is not None and len(cols_k) < len(last[0]) // 2:
            return ("oneoff", cols_k, V_k)
        self._sent[k] = (cols_k, V_k, version)
        return ("full", cols_k, V_k)

    def _matmul(self, r: torch.Tensor, c: torch.Tensor, V64: torch.Tensor) -> torch.Tensor:
        rn, cn, Vn = backend.to_numpy(r), backend.to_numpy(c), backend.to_numpy(V64)
        version = next(self._versions)
        by_rows = self.split == "rows"
        owned = self._owned(rn if by_rows else cn)
        futs, rows_of = {}, {}
        for k, p in enumerate(owned):
            if by_rows and not p.size:
                continue
            rows_of[k] = rn[p] if by_rows else rn
            payload = self._payload(k, cn if by_rows else cn[p], Vn if by_rows else Vn[p], version)
            self.transfer_bytes += sum(getattr(x, "nbytes", 0) for x in payload[1:])
            futs[k] = self._submit(k, "matmul", rows_of[k], payload, version)
        out = np.zeros((len(rn), Vn.shape[1]))
        for k in sorted(futs):  # fixed order: the sum does not depend on which worker answered first
            part = futs[k].result()
            if isinstance(part, str):  # stale cache (the shard was rebuilt): resend the coefficients in full
                cols_k, V_k, _ = self._sent[k]
                part = self._submit(k, "matmul", rows_of[k], ("full", cols_k, V_k), version).result()
            if by_rows:
                out[owned[k]] = part
            else:
                out += part
        self.entries_evaluated += len(rn) * len(cn)
        return torch.as_tensor(out, device=self.device)

    def with_dtype(self, dtype: Any) -> KernelOperator:
        """A new sharded operator whose source builds in ``dtype`` (the source must be a ``functools.partial``)."""
        dt = backend.resolve_dtype(dtype)
        if dt == self.dtype:
            return self
        if not isinstance(self.source, functools.partial):
            raise TypeError("with_dtype needs the source to be a functools.partial taking dtype=")
        src = functools.partial(self.source.func, *self.source.args, **{**self.source.keywords, "dtype": str(dt)[6:]})
        return DistributedOperator(self.client, src, n=self.n, n_shards=len(self.shards), device=self.device,
                                   memory_budget=self.memory_budget)

    def shard_stats(self) -> list[dict]:
        """Per shard: seconds spent computing products on its worker, number of products, point range."""
        return self.client.gather([self._submit(k, "stats") for k in range(len(self.shards))])

    def local_operator(self) -> KernelOperator:
        """The source operator built in this process (for what only needs its structure, such as the
        image grid of a CNTK for the circulant preconditioner); built once, on first use."""
        if getattr(self, "_local", None) is None:
            self._local = self.source()
        return self._local

    def close(self) -> None:
        """Release the shards' memory on the workers."""
        for f in self.shards:
            f.release()
        self.shards = []

    def __repr__(self) -> str:
        return (f"DistributedOperator({self.source_kind}, n={self.n}, shards={len(self.bounds) - 1}, "
                f"workers={len(set(self.workers))})")
