"""Kernel operators: kernel matrices you multiply, served tile by tile (never stored whole).

``KernelOperator`` (n, block, diag, matmul, restrict, and the memory cost hook ``entry_bytes`` /
``tile_cost`` / ``tile_shape``), ``DenseOperator``, ``NTKOperator`` (prior Gram tiles),
``FactorisedNTKOperator`` (gathers from small group Grams — CMap scale; ``ntk_operator`` picks one of the
two), ``CNTKOperator`` (compact CNTK tiles over observed pixels) and ``PolyphaseCNTKOperator`` (one-GEMM
CNTK matvec from the window form).
"""
from .base import KernelOperator, SubOperator, as_index, default_memory_budget, tile_shape
from .cntk import CNTKOperator, PeriodicGrid, PolyphaseCNTKOperator, observed_index, periodic_grid
from .dense import DenseOperator
from .ntk import FactorisedNTKOperator, NTKOperator, ntk_operator

__all__ = [
    "KernelOperator", "SubOperator", "DenseOperator", "NTKOperator", "FactorisedNTKOperator", "ntk_operator",
    "CNTKOperator", "PolyphaseCNTKOperator", "PeriodicGrid", "as_index", "tile_shape", "default_memory_budget",
    "observed_index", "periodic_grid",
]
