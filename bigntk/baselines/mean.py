"""Mean over cell type: predict a pair's profile by the mean training profile of its cell line."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from ..priors import group_means
from ._common import check_pairs, check_query


class CellMean(BaseEstimator):
    """Cell-type mean baseline (global mean for a cell line without training profiles)."""

    def fit(self, Y, cell, drug) -> "CellMean":
        Y, cell, drug = check_pairs(Y, cell, drug)
        self.n_cells_ = int(cell.max()) + 1 if cell.size else 0
        self.means_, self.counts_ = group_means(Y, cell, self.n_cells_)
        self.global_ = Y.mean(0, dtype=np.float64)
        return self

    def predict(self, cell, drug) -> np.ndarray:
        cell, _ = check_query(cell, drug)
        out = np.repeat(self.global_[None, :], cell.size, 0)
        known = cell < self.n_cells_
        out[known] = self.means_[cell[known]]
        return out.astype(np.float32)
