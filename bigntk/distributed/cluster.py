"""Clusters for the ``--workers`` / ``--scheduler`` switch, and operators built on them.

``cluster(workers=N)`` starts a ``dask.distributed.LocalCluster`` of N processes (1 thread each unless
said), or on a machine with GPUs a ``dask_cuda.LocalCUDACluster`` with one worker per GPU;
``cluster(scheduler=ADDRESS)`` joins an existing cluster. Both yield an ordinary ``Client`` and close
only what they started. ``distributed_operator(client, factory, ...)`` builds the sharded operator of
a factory (``ntk_operator``, ``PolyphaseCNTKOperator.from_kernel`` …) with each worker's share of the
memory budget.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Any, Callable, Iterator

from .. import backend
from .operator import DistributedOperator

__all__ = ["cluster", "distributed_operator"]


@contextlib.contextmanager
def cluster(workers: int | None = None, scheduler: str | None = None, *, threads_per_worker: int = 1,
            gpus: bool | None = None, memory_limit: str | int | None = None, quiet: bool = False) -> Iterator[Any]:
    """Yield a ``dask.distributed.Client`` (None when neither ``workers`` nor ``scheduler`` is given).

    gpus : None = use ``dask_cuda.LocalCUDACluster`` when CUDA is available (one worker per GPU).
    """
    if workers is None and scheduler is None:
        yield None
        return
    from distributed import Client, LocalCluster

    # dask's nannies write their workers' settings (OMP/MKL/OPENBLAS_NUM_THREADS=1, PYTHONHASHSEED, ...)
    # into this process's os.environ; every subprocess started later would inherit them (sequential BLAS
    # changes results bitwise), so the caller's environment is put back when the cluster closes.
    environ = dict(os.environ)
    if scheduler is not None:
        client, started = Client(scheduler), None
    else:
        if int(workers) < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        import torch

        if gpus or (gpus is None and torch.cuda.is_available()):
            from dask_cuda import LocalCUDACluster

            started = LocalCUDACluster(n_workers=min(int(workers), torch.cuda.device_count()),
                                       threads_per_worker=threads_per_worker, dashboard_address=":0")
        else:
            started = LocalCluster(n_workers=int(workers), threads_per_worker=threads_per_worker, processes=True,
                                   dashboard_address=":0", memory_limit=memory_limit or "auto")
        client = Client(started)
    if not quiet:
        print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
    try:
        yield client
    finally:
        client.close()
        if started is not None:
            started.close()
        _restore_environ(environ)


def _restore_environ(saved: dict) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


def n_workers(client: Any) -> int:
    return max(1, len(client.scheduler_info()["workers"]))


def distributed_operator(client: Any, factory: Callable[..., Any], *args: Any, n: int | None = None,
                         device: Any = None, memory_budget: Any = None, worker_device: Any = None,
                         n_shards: int | None = None, **kwargs: Any) -> DistributedOperator:
    """``factory(*args, **kwargs)`` sharded over the client's workers (each with its share of the budget).

    worker_device : the device operators use on the workers (default: cuda when the client device is
        cuda, which dask-cuda maps to each worker's own GPU, else cpu).
    """
    dev = backend.resolve_device(device)
    budget = backend.memory_budget(dev, memory_budget)
    share = max(budget // n_workers(client), 1)
    wdev = worker_device or ("cuda" if dev.type == "cuda" else "cpu")
    source = functools.partial(factory, *args, device=wdev, memory_budget=share, **kwargs)
    return DistributedOperator(client, source, n=n, n_shards=n_shards, device=dev, memory_budget=budget)
