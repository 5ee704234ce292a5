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


def group_means(Y: np.ndarray, labels: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(means (n_groups, G) float64, counts (n_groups,)); groups without rows get the global mean."""
    counts = np.bincount(labels, minlength=n_groups)
    S = np.zeros((n_groups, Y.shape[1]))
    np.add.at(S, labels, Y.astype(np.float64))
    glob = Y.mean(0, dtype=np.float64) if len(Y) else np.zeros(Y.shape[1])
    M = np.where(counts[:, None] > 0, S / np.maximum(counts, 1)[:, None], glob[None, :])
    return M, counts
