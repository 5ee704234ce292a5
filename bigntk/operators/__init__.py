"""Kernel operators: kernel matrices you multiply, served tile by tile (never stored whole).

``KernelOperator`` (n, block, diag, matmul, restrict), ``DenseOperator``, ``NTKOperator`` (prior Gram
tiles), ``FactorisedNTKOperator`` (gathers from small group Grams — CMap scale), ``CNTKOperator`` (compact
CNTK tiles over observed pixels) and ``PolyphaseCNTKOperator`` (one-GEMM CNTK matvec from the window form).
"""
from .base import KernelOperator, SubOperator, as_index, default_memory_budget, tile_shape
from .cntk import CNTKOperator, PeriodicGrid, PolyphaseCNTKOperator, observed_index
from .dense import DenseOperator
from .ntk import FactorisedNTKOperator, NTKOperator

__all__ = [
    "KernelOperator", "SubOperator", "DenseOperator", "NTKOperator", "FactorisedNTKOperator",
    "CNTKOperator", "PolyphaseCNTKOperator", "PeriodicGrid", "as_index", "tile_shape", "default_memory_budget",
    "observed_index",
]
