"""Kernels (pure math): the fully connected NTK and the convolutional NTK (``bigntk.kernels.cntk``)."""
from . import cntk
from .ntk import dual, dual_derivative, nngp, ntk, relu_duals

__all__ = ["ntk", "nngp", "dual", "dual_derivative", "relu_duals", "cntk"]
