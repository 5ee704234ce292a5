"""Solvers for (K + ridge·I) α = Y on kernel operators.

``solve(operator, Y, solver="auto"|"direct"|"eigenpro"|"cg")``, ``KernelRegressor`` (fit / predict on any
operator), ``EigenPro`` (EigenPro 2, streamed, checkpointed), ``ConjugateGradient`` (deflated, Nyström
preconditioned, float64) and ``solve_direct`` (Cholesky). ``solver="auto"`` is direct up to
``DIRECT_MAX`` (30 000) points, EigenPro above.
"""
from .cg import CGResult, ConjugateGradient, nystrom_preconditioner
from .checkpoint import CheckpointMismatchError
from .direct import NotPositiveDefiniteError, solve_direct
from .eigenpro import EigenPro, EigenProResult, eigenpro_parameters
from .regressor import DIRECT_MAX, SOLVERS, KernelRegressor, fit_ntk_iterative, solve

__all__ = [
    "solve", "KernelRegressor", "EigenPro", "EigenProResult", "eigenpro_parameters", "ConjugateGradient",
    "CGResult", "nystrom_preconditioner", "solve_direct", "NotPositiveDefiniteError", "CheckpointMismatchError",
    "DIRECT_MAX", "SOLVERS", "fit_ntk_iterative",
]
