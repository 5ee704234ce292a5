"""Preconditioners for the conjugate-gradient solver (``bigntk.solvers.ConjugateGradient``).

* ``nystrom_preconditioner`` — randomized Nyström (any operator; top eigenspace);
* ``block_jacobi_preconditioner`` — exact solves with diagonal blocks (spatial tiles);
* ``MaskedCirculantPreconditioner`` — for CNTK operators on an image grid: the exact inverse of the
  masked block-circulant surrogate K_Q (the CNTK averaged over shifts by multiples of Q), applied with
  FFTs and a Schur complement over the unobserved pixels. The default for CNTK inpainting.

``make_preconditioner(kind, operator, train, ridge)`` builds any of them for the CG solver.
"""
from .block_jacobi import block_jacobi_preconditioner
from .circulant import BlockCirculantKernel, MaskedCirculantPreconditioner, default_period
from .factory import PRECONDITIONERS, make_preconditioner
from .nystrom import nystrom_preconditioner

__all__ = ["nystrom_preconditioner", "block_jacobi_preconditioner", "BlockCirculantKernel",
           "MaskedCirculantPreconditioner", "default_period", "make_preconditioner", "PRECONDITIONERS"]
