"""Exact fold-out NTK cross-validation on CMap pairs: one factorisation, then a small solve per fold.

A fold hides test pairs T of one line c and trains on every other line's pairs N plus c's remaining
pairs R (all of them, or ``sparse_drugs`` of them). The prior rebuilds c's training mean from R, so
only the kernel rows of line c change between folds; K[N, N] is the same in every fold and is the
block of the kernel K over all pairs with every pair as training. With H = (K + λI)⁻¹ factorised
once (float64), per line c

    H_N = (K[N, N] + λI)⁻¹ = H[N, N] − H[N, J] H[J, J]⁻¹ H[J, N]     (J = c's pairs; block inverse)
    z   = H_N Y_N,

and per fold, with the fold's kernel V = K_f[N, R ∪ T], W = K_f[R ∪ T, R ∪ T] (block elimination
of the training matrix [[K_NN + λ, V_R], [V_Rᵀ, W_RR + λ]])

    X   = H_N V_R,  S = W_RR + λI − V_Rᵀ X,  a_R = S⁻¹ (Y_R − V_Rᵀ z),  a_N = z − X a_R,
    Ŷ_T = V_Tᵀ a_N + W_TR a_R,

which is the refit's prediction K_f[T, train] (K_f[train, train] + λI)⁻¹ Y_train exactly (up to
float64 rounding). Cost: one n³ factorisation, per line O(n² n_c), per fold O(n² |R|) in GEMMs,
against O(n³) per fold for refits. Needs ~4 n² float64 in memory (:func:`foldout_bytes`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ...backend import resolve_device
from ...operators import FactorisedNTKOperator, ntk_operator
from ...priors.base import GramFactor
from ...store import PairTable
from ...priors.cmap import cell_unit_means
from .priors import split_prior

FOLDOUT_PRIORS = ("sparse", "onehot")


def foldout_bytes(n_pairs: int) -> int:
    """Peak memory of :class:`FoldOut` on ``n_pairs`` pairs: H, H_N and a same-size temporary, float64."""
    return 4 * 8 * int(n_pairs) ** 2


class FoldOut:
    """Fold-out predictor for one table and settings (``cv.CVSettings``); see the module docstring.

    table : the eligible pairs (``PairTable``, Y (n, G)); ref : the reference line's code.
    :meth:`predict` must be called with the splits of one line after another (state is per line).
    """

    def __init__(self, table: PairTable, ref: int, settings, device: Optional[str] = None) -> None:
        if settings.prior not in FOLDOUT_PRIORS:
            raise ValueError(f"fold-out CV supports priors {FOLDOUT_PRIORS}, not {settings.prior!r}")
        self.table, self.ref, self.s = table, ref, settings
        self.device = resolve_device(device)
        self.ridge = float(settings.ridge)
        self.n = table.n_pairs
        self.Y = torch.as_tensor(np.asarray(table.Y, np.float64), device=self.device)  # (n, G)
        self._base = split_prior(table, np.arange(self.n), np.arange(self.n), ref, settings)
        if settings.prior == "sparse":  # what every split shares: the lines' means, the drug Gram E Eᵀ (D, D)
            self._means = cell_unit_means(table.Y, table.cell, len(table.cell_names))
            E = self._base.factors()[1].embedding.to(torch.float64)
            self._drug_gram = E @ E.T
        K = self._operator(None).block()  # (n, n) float64, every pair a training pair
        K.diagonal().add_(self.ridge)
        self.H = torch.cholesky_inverse(torch.linalg.cholesky(K))
        del K
        self.alpha = self.H @ self.Y  # (n, G): the all-pairs fit, reused for every line's z
        self._line: Optional[int] = None

    def _operator(self, own: Optional[np.ndarray], c: int = -1):
        """NTK over all pairs (table order), prior as for training on every pair except line c's, of which
        only ``own`` (None: the all-pairs prior). Only the sparse prior's cell Gram depends on the split:
        the other lines' means and the reference profiles (the reference is always training) do not."""
        kw = dict(depth=self.s.depth, device=self.device, dtype=torch.float64)
        if self.s.prior != "sparse":  # one-hot: the same kernel in every split
            if getattr(self, "_fixed", None) is None:
                self._fixed = ntk_operator(self._base, **kw)
            return self._fixed
        cell_f, drug_f = self._base.factors()
        if own is not None:
            M = self._means.copy()
            M[c] = cell_unit_means(self.table.Y[own], np.zeros(len(own), np.int64), 1)[0]
            cell_f = GramFactor(cell_f.weight, cell_f.labels, gram=torch.from_numpy(M @ M.T), scale=cell_f.scale)
        drug_f = GramFactor(drug_f.weight, drug_f.labels, gram=self._drug_gram, scale=drug_f.scale)
        return FactorisedNTKOperator([cell_f, drug_f], nugget=self._base.nugget, **kw)

    def _enter_line(self, c: int) -> None:
        """Per line c: H[N, J], a factor of H[J, J] and z = H_N Y_N (module docstring), without forming H_N:
        for a matrix B over N, H_N B = (H B̄)[N] − H[N, J] H[J, J]⁻¹ (H B̄)[J] with B̄ = B zero-padded to
        every pair (block inverse), and H Ȳ = α − H[:, J] Y_J."""
        cell = self.table.cell
        self.J = torch.as_tensor(np.nonzero(cell == c)[0], device=self.device)
        self.N = torch.as_tensor(np.nonzero(cell != c)[0], device=self.device)
        H_J = self.H.index_select(1, self.J)  # (n, n_c)
        self.H_NJ = H_J.index_select(0, self.N)
        self.L_JJ = torch.linalg.cholesky(H_J.index_select(0, self.J))
        HY = self.alpha - H_J @ self.Y[self.J]
        self.z = self._schur(HY)
        self._line = c

    def _schur(self, HB: torch.Tensor) -> torch.Tensor:
        """H_N B from H B̄ (n, k) (see :meth:`_enter_line`)."""
        return HB[self.N] - self.H_NJ @ torch.cholesky_solve(HB[self.J], self.L_JJ)

    def predict(self, c: int, test: np.ndarray, train: np.ndarray) -> np.ndarray:
        """(|test|, G) float32 predictions of the ``test`` pairs (line c) from the ``train`` pairs."""
        if self._line != c:
            self._enter_line(c)
        cell = self.table.cell
        own = train[cell[train] == c]
        if train.size - own.size != self.N.numel():
            raise ValueError("fold-out CV needs every pair of the other lines in the training set")
        op = self._operator(own, c)
        R = torch.as_tensor(own, device=self.device)
        cols = torch.cat([R, torch.as_tensor(np.asarray(test), device=self.device)])
        r = R.numel()
        V = op.block(self.N, cols)  # (n_N, |R| + |T|)
        W = op.block(cols, cols)
        V_pad = V.new_zeros(self.n, r)
        V_pad[self.N] = V[:, :r]
        X = self._schur(self.H @ V_pad)  # H_N V_R
        S = W[:r, :r] - V[:, :r].T @ X
        S.diagonal().add_(self.ridge)
        a_R = torch.cholesky_solve(self.Y[R] - V[:, :r].T @ self.z, torch.linalg.cholesky(S))
        # Ŷ_T = V_Tᵀ (z − X a_R) + W_TR a_R, with V_Tᵀ X (|T|, r) first: no (n, G) temporary
        P = V[:, r:].T @ self.z + (W[r:, :r] - V[:, r:].T @ X) @ a_R
        return P.cpu().numpy().astype(np.float32)
