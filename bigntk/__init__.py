"""bigntk: GPU-first matrix completion with infinite-width neural networks (NTK / CNTK).

Data path: kernels (math) → operators (blocks on demand) → solvers → apps → cli.
"""
__version__ = "0.1.0"

from . import priors
from .completion import NTKCompleter, complete
from .apps.inpaint import inpaint
from .kernels import nngp, ntk

__all__ = ["__version__", "complete", "NTKCompleter", "inpaint", "ntk", "nngp", "priors"]
