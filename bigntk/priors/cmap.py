"""CMap column priors for the genes × (cell, drug) matrix, never formed as an n × p matrix.

* :func:`one_hot_prior` — one-hot of the cell and/or drug label (:func:`bigntk.priors.one_hot`).
* :class:`SparseRegimePrior` — the paper's prior for sparse lines: column (c, d) has features
  ``[w·‖e_d‖·m̂_c, e_d]`` plus the identity nugget τ = 1.5, where e_d is the reference line's
  profile of drug d (the reference line's mean profile when d was not measured there) and m̂_c the
  unit-norm mean of cell c's *training* profiles (zero for a line without training profiles),
  w = 0.75. Its raw Gram is

      K[(c,d), (c',d')] = w²‖e_d‖‖e_d'‖ · (m̂_c·m̂_c') + e_d·e_d'

  held as a (C × C) cell Gram, per-drug norms and the (D × G) drug embedding (drug blocks are
  formed on demand, so D = 20k needs no 20k × 20k matrix).
* :func:`mixed_prior` — the paper's prior for dense lines (≥ 150 training drugs): the columns of
  a DNPP / FaLRTC imputation (observed profile for a training column, the baseline's prediction
  for a test column), concatenated with the sparse-regime features.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .base import GramFactor, Prior, group_means
from .concrete import concat, from_imputation, one_hot


def one_hot_prior(cell: np.ndarray, drug: np.ndarray, which: str = "both", nugget: float = 0.0) -> Prior:
    """One-hot prior of the columns' cell ('cell'), drug ('drug') or both concatenated ('both')."""
    cell, drug = np.asarray(cell, np.int64), np.asarray(drug, np.int64)
    blocks = {"cell": [one_hot(cell)], "drug": [one_hot(drug)], "both": [one_hot(cell), one_hot(drug)]}
    if which not in blocks:
        raise ValueError(f"which must be 'cell', 'drug' or 'both', got {which!r}")
    return concat(blocks[which], nugget=nugget)


class SparseRegimePrior(Prior):
    """Prior over columns (cell[j], drug[j]) with features [w‖e_d‖ m̂_c, e_d] (see module docstring).

    cell, drug      : (n,) int codes of the columns
    cell_unit_means : (C, G) unit-norm training mean per cell (rows of zeros allowed)
    drug_profiles   : (D, G) e_d for every drug code
    """

    def __init__(self, cell, drug, cell_unit_means, drug_profiles, w: float = 0.75, nugget: float = 1.5) -> None:
        self.cell = np.asarray(cell, np.int64)
        self.drug = np.asarray(drug, np.int64)
        if self.cell.shape != self.drug.shape or self.cell.ndim != 1:
            raise ValueError("cell and drug must be 1-D arrays of the same length")
        M = np.asarray(cell_unit_means, np.float64)
        E = np.asarray(drug_profiles, np.float64)
        if M.ndim != 2 or E.ndim != 2 or M.shape[1] != E.shape[1]:
            raise ValueError(f"cell means (C, G) and drug profiles (D, G) disagree: {M.shape}, {E.shape}")
        if self.cell.size and (self.cell.max() >= M.shape[0] or self.drug.max() >= E.shape[0]):
            raise ValueError("a column's cell or drug code is out of range of the embeddings")
        self.n = self.cell.size
        self.w = float(w)
        self.cell_gram = torch.from_numpy(M @ M.T)  # (C, C)
        self.drug_embedding = torch.from_numpy(E)  # (D, G)
        self.drug_norm = torch.from_numpy(np.linalg.norm(E, axis=1))  # (D,)
        self._cell_t, self._drug_t = torch.from_numpy(self.cell), torch.from_numpy(self.drug)
        self.nugget = float(nugget)

    def _raw_gram(self, rows, cols, dtype):
        dev = rows.device
        cr, cc = self._cell_t.to(dev)[rows], self._cell_t.to(dev)[cols]
        dr, dc = self._drug_t.to(dev)[rows], self._drug_t.to(dev)[cols]
        E = self.drug_embedding.to(device=dev, dtype=dtype)
        nrm = self.drug_norm.to(device=dev, dtype=dtype)
        Gc = self.cell_gram.to(device=dev, dtype=dtype)[cr[:, None], cc[None, :]]
        return (self.w**2) * nrm[dr][:, None] * nrm[dc][None, :] * Gc + E[dr] @ E[dc].T

    def _raw_sq_norms(self, idx, dtype):
        dev = idx.device
        c, d = self._cell_t.to(dev)[idx], self._drug_t.to(dev)[idx]
        n2 = self.drug_norm.to(device=dev, dtype=dtype)[d] ** 2
        return (self.w**2) * n2 * self.cell_gram.to(device=dev, dtype=dtype).diagonal()[c] + n2

    def factors(self) -> list:
        """Gram factors: [w, cell, m̂ m̂ᵀ, scale ‖e_drug‖] and [1, drug, embedding E (D × G)] (the
        D × D drug Gram is left to the operator, which forms it only when it is small enough)."""
        scale = self.drug_norm.numpy()[self.drug]
        return [GramFactor(self.w, self.cell, self.cell_gram, scale),
                GramFactor(1.0, self.drug, embedding=self.drug_embedding)]


def cell_unit_means(Y_train: np.ndarray, cell_train: np.ndarray, n_cells: int) -> np.ndarray:
    """(n_cells, G) unit-norm mean training profile per cell; zeros for cells without training data."""
    M, counts = group_means(np.asarray(Y_train, np.float64), np.asarray(cell_train, np.int64), n_cells)
    M[counts == 0] = 0.0
    n = np.linalg.norm(M, axis=1, keepdims=True)
    return np.where(n > 0, M / np.where(n > 0, n, 1.0), 0.0)


def reference_profiles(Y_train: np.ndarray, cell_train: np.ndarray, drug_train: np.ndarray, reference: int,
                       n_drugs: int) -> np.ndarray:
    """(n_drugs, G) e_d: the reference line's training profile of d, its mean profile where d is missing."""
    Y_train = np.asarray(Y_train, np.float64)
    ref = np.asarray(cell_train) == reference
    if not ref.any():
        raise ValueError(f"the reference line (code {reference}) has no training profiles")
    E = np.repeat(Y_train[ref].mean(0, keepdims=True), n_drugs, 0)
    S, counts = group_means(Y_train[ref], np.asarray(drug_train)[ref].astype(np.int64), n_drugs)
    E[counts > 0] = S[counts > 0]
    return E


def sparse_regime_prior(Y_train, cell_train, drug_train, cell, drug, *, reference: int, n_cells: int,
                        n_drugs: int, w: float = 0.75, nugget: float = 1.5) -> SparseRegimePrior:
    """The paper's sparse-regime prior for columns (cell, drug) from the training pairs."""
    return SparseRegimePrior(cell, drug, cell_unit_means(Y_train, cell_train, n_cells),
                             reference_profiles(Y_train, cell_train, drug_train, reference, n_drugs), w, nugget)


def mixed_prior(imputation: np.ndarray, base: Optional[Prior] = None, *, weight: float = 1.0,
                nugget: float = 1.5) -> Prior:
    """Columns of an imputation (G × n) as features, optionally concatenated with ``base`` (e.g. the sparse prior)."""
    imp = from_imputation(np.asarray(imputation, np.float64))
    if base is None:
        return imp.with_nugget(nugget)
    return concat([base, imp], weights=[1.0, weight], nugget=nugget)
