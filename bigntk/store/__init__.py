"""Out-of-core observation store (zarr v3) for profile × gene data such as CMap L1000.

See :mod:`bigntk.store.observations` for the layout and the interrupted-write rules and
:mod:`bigntk.store.aggregate` for the streaming (cell, drug) aggregation.
"""
from .aggregate import PairTable, aggregate, aggregate_to_store, iter_pair_buckets
from .observations import (
    FORMAT,
    FORMAT_VERSION,
    IncompleteStoreError,
    ObservationStore,
    ObservationWriter,
    StoreFormatError,
    default_chunk_rows,
    open_store,
)

__all__ = [
    "FORMAT", "FORMAT_VERSION", "IncompleteStoreError", "ObservationStore", "ObservationWriter",
    "StoreFormatError", "default_chunk_rows", "open_store", "PairTable", "aggregate", "aggregate_to_store",
    "iter_pair_buckets",
]
