"""Input validation shared by the baselines."""
from __future__ import annotations

import numpy as np


def check_pairs(Y, cell, drug) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y (n, G) float32, cell (n,) int64, drug (n,) int64) with clear errors."""
    Y = np.asarray(Y, dtype=np.float32)
    cell = np.asarray(cell).astype(np.int64)
    drug = np.asarray(drug).astype(np.int64)
    if Y.ndim != 2:
        raise ValueError(f"Y must be (n_pairs, n_genes), got shape {Y.shape}")
    if cell.shape != (Y.shape[0],) or drug.shape != (Y.shape[0],):
        raise ValueError(f"cell and drug must have shape ({Y.shape[0]},), got {cell.shape}, {drug.shape}")
    if not np.isfinite(Y).all():
        raise ValueError("Y contains NaN/inf; aggregate or impute missing genes first")
    return Y, cell, drug


def check_query(cell, drug) -> tuple[np.ndarray, np.ndarray]:
    cell = np.asarray(cell).astype(np.int64).reshape(-1)
    drug = np.asarray(drug).astype(np.int64).reshape(-1)
    if cell.shape != drug.shape:
        raise ValueError(f"cell and drug must have the same length, got {cell.size} and {drug.size}")
    return cell, drug
