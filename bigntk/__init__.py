"""bigntk: GPU-first matrix completion with infinite-width neural networks (NTK / CNTK).

Data path: kernels (math) → operators (blocks on demand) → solvers → apps → cli.
The names below are imported on first use, so ``import bigntk`` (and the command line's ``--help``)
does not pay for torch until something computes.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> (module that defines it, attribute; None = the module itself)
_EXPORTS = {
    "complete": ("bigntk.completion", "complete"), "NTKCompleter": ("bigntk.completion", "NTKCompleter"),
    "inpaint": ("bigntk.apps.inpaint", "inpaint"), "ntk": ("bigntk.kernels", "ntk"),
    "nngp": ("bigntk.kernels", "nngp"), "priors": ("bigntk.priors", None),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module_name, attr = _EXPORTS[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bigntk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
