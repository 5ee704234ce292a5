"""Baselines for completing (cell, drug) → profile tables: cell mean, DNPP, FaLRTC.

All share one interface (scikit-learn style)::

    model.fit(Y, cell, drug)           # Y: (n_train, G) profiles of measured pairs; cell, drug: (n_train,) int codes
    model.predict(cell, drug) -> (n_test, G) float32 predictions for unmeasured pairs
"""
from .dnpp import DNPP
from .falrtc import FaLRTC, complete_tensor
from .mean import CellMean

__all__ = ["CellMean", "DNPP", "FaLRTC", "complete_tensor", "make_baseline"]


def make_baseline(name: str, **kwargs):
    """Baseline by name: ``mean``, ``dnpp`` or ``falrtc``."""
    table = {"mean": CellMean, "dnpp": DNPP, "falrtc": FaLRTC}
    if name not in table:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(table)}")
    return table[name](**kwargs)
