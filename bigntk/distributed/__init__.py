"""Scale-out on ``dask.distributed``: sharded kernel operators and the clusters they run on.

``DistributedOperator`` (a :class:`~bigntk.operators.KernelOperator` whose points are sharded over
workers), ``distributed_operator(client, factory, ...)`` and ``cluster(workers=, scheduler=)``.
Importing this package imports dask; the rest of bigntk does not need it.
"""
from .cluster import cluster, distributed_operator
from .operator import DistributedOperator, shard_bounds

__all__ = ["DistributedOperator", "distributed_operator", "cluster", "shard_bounds"]
