"""Solvers for (K + ridge·I) α = Y on kernel operators.

``solve(operator, Y, solver="auto"|"direct"|"eigenpro"|"cg")`` → :class:`SolveResult`;
``KernelRegressor`` (fit / predict on any operator); ``EigenPro`` (EigenPro 2, streamed, checkpointed);
``ConjugateGradient`` (deflated, preconditioned, float64); ``solve_direct`` (Cholesky). The policy
(names, the ``auto`` thresholds, the result type) lives in :mod:`bigntk.solvers.policy`.
"""
from .cg import ConjugateGradient
from .checkpoint import CheckpointMismatchError
from .direct import NotPositiveDefiniteError, solve_direct
from .eigenpro import EigenPro, eigenpro_parameters
from .policy import DIRECT_MAX, DIRECT_MAX_FAST, SOLVERS, ConvergenceWarning, SolveResult, choose_solver
from .regressor import KernelRegressor, check_options, solve

__all__ = [
    "solve", "KernelRegressor", "EigenPro", "eigenpro_parameters", "ConjugateGradient", "solve_direct",
    "SolveResult", "ConvergenceWarning", "NotPositiveDefiniteError", "CheckpointMismatchError",
    "DIRECT_MAX", "DIRECT_MAX_FAST", "SOLVERS", "choose_solver", "check_options",
]
