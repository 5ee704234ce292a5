"""DNPP: drug-neighbour profile prediction (Hodos et al., 2018).

sim(d, d') = Pearson correlation of the two drugs' profiles, averaged over the cell lines where
both were measured (training pairs only). A pair (c, d) is predicted as the average of the
profiles in cell c of the ``k`` drugs most similar to d among those measured in c, weighted by
sim clipped to [0, 1]; when no neighbour has positive weight, the cell mean is used.

Profiles are centred by their cell line's training mean before correlating (``center=True``):
the analogue of the z-scores DNPP was designed for; it matters for raw-scale data where the cell
baseline would make every pair of drugs look alike.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from ..priors import group_means
from ._common import check_pairs, check_query


def _standardise_rows(X: np.ndarray) -> np.ndarray:
    X = X - X.mean(1, keepdims=True)
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(n > 0, n, 1.0)


class DNPP(BaseEstimator):
    """Drug-neighbour profile prediction; ``k`` neighbours (10 in Hodos et al.). A scikit-learn
    estimator: parameters are stored as given and checked by ``fit``."""

    def __init__(self, k: int = 10, center: bool = True) -> None:
        self.k, self.center = k, center

    def fit(self, Y, cell, drug) -> "DNPP":
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")
        Y, cell, drug = check_pairs(Y, cell, drug)
        self.n_cells_ = int(cell.max()) + 1
        self.n_drugs_ = int(drug.max()) + 1
        self.means_, _ = group_means(Y, cell, self.n_cells_)
        self.Y_, self.cell_, self.drug_ = Y, cell, drug
        Yc = Y - self.means_[cell] if self.center else Y
        self.Z_ = _standardise_rows(Yc.astype(np.float64)).astype(np.float32)
        self.global_ = Y.mean(0, dtype=np.float64)
        return self

    def similarity(self, query_drugs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean correlation (q, n_drugs), number of shared cells (q, n_drugs)) for drugs ``query_drugs``."""
        q = np.asarray(query_drugs, dtype=np.int64)
        pos = np.full(self.n_drugs_, -1, dtype=np.int64)
        pos[q[q < self.n_drugs_]] = np.nonzero(q < self.n_drugs_)[0]
        S = np.zeros((q.size, self.n_drugs_), dtype=np.float64)
        N = np.zeros((q.size, self.n_drugs_), dtype=np.int32)
        for c in range(self.n_cells_):
            rows = np.nonzero(self.cell_ == c)[0]
            d = self.drug_[rows]
            qi = pos[d]
            hit = qi >= 0
            if not hit.any():
                continue
            R = self.Z_[rows[hit]] @ self.Z_[rows].T  # (q_c, n_c) Pearson correlations in cell c
            S[qi[hit][:, None], d[None, :]] += R
            N[qi[hit][:, None], d[None, :]] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(N > 0, S / np.maximum(N, 1), np.nan), N

    def predict(self, cell, drug) -> np.ndarray:
        """(n_query, G) float32 predictions, one matrix of similarities and one row-wise sort per cell."""
        cell, drug = check_query(cell, drug)
        uq, qidx = np.unique(drug, return_inverse=True)
        sim, _ = self.similarity(uq)
        out = np.empty((cell.size, self.Y_.shape[1]), dtype=np.float32)
        for c in np.unique(cell).tolist():
            qi = np.nonzero(cell == c)[0]
            rows = np.nonzero(self.cell_ == c)[0] if c < self.n_cells_ else np.zeros(0, np.int64)
            out[qi] = self._predict_cell(c, drug[qi], qidx[qi], rows, sim)
        return out

    def _predict_cell(self, c: int, d: np.ndarray, qidx: np.ndarray, rows: np.ndarray, sim: np.ndarray) -> np.ndarray:
        """(q, G) predictions in cell c for drugs d (q,) from the training rows of c (n_c,)."""
        base = self.means_[c] if c < self.n_cells_ else self.global_
        out = np.repeat(np.asarray(base, np.float32)[None, :], d.size, 0)
        if not rows.size:
            return out
        cand = self.drug_[rows]  # (n_c,)
        s = sim[qidx[:, None], cand[None, :]]  # (q, n_c)
        s = np.where((cand[None, :] == d[:, None]) | np.isnan(s), -np.inf, s)
        top = np.argsort(-s, axis=1)[:, : int(self.k)]  # (q, k), as the per-pair argsort
        w = np.clip(np.take_along_axis(s, top, 1), 0.0, 1.0)  # (q, k)
        tot = w.sum(1)
        ok = (tot > 0) & (d < self.n_drugs_)
        if ok.any():  # Σ_k w_qk Y[top_qk] / Σ_k w_qk as a sparse (q_ok, n_c) @ (n_c, G) product
            q_ok = int(ok.sum())
            Wm = sp.csr_matrix((w[ok].ravel(), top[ok].ravel(), np.arange(0, q_ok * top.shape[1] + 1, top.shape[1])),
                               shape=(q_ok, rows.size))
            out[ok] = (Wm @ self.Y_[rows].astype(np.float64)) / tot[ok, None]
        return out
