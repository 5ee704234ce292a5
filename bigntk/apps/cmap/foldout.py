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
        everything = np.arange(self.n)
        op = self._operator(everything)
        K = op.block()  # (n, n) float64, every pair a training pair
        K.diagonal().add_(self.ridge)
        self.H = torch.cholesky_inverse(torch.linalg.cholesky(K))
        del K
        self._line: Optional[int] = None

    def _operator(self, train: np.ndarray):
        """NTK operator over all pairs (table order) with the prior built from the ``train`` pairs."""
        prior = split_prior(self.table, train, np.arange(self.n), self.ref, self.s)
        kw = dict(depth=self.s.depth, device=self.device, dtype=torch.float64)
        if self.s.prior == "sparse":
            factors, nugget = self._shared_drug_gram(prior)
            return FactorisedNTKOperator(factors, nugget=nugget, **kw)
        return ntk_operator(prior, **kw)

    def _shared_drug_gram(self, prior):
        """The sparse prior's drug factor E Eᵀ is the same in every fold (the reference line is always
        training): form it once and hand it to every fold's operator as a ready Gram."""
        cell_f, drug_f = prior.factors()
        if getattr(self, "_drug_gram", None) is None:
            E = drug_f.embedding.to(torch.float64)
            self._drug_embedding, self._drug_gram = E, E @ E.T
        elif not torch.equal(drug_f.embedding, self._drug_embedding):
            raise RuntimeError("the reference profiles changed between folds; the reference line must be training-only")
        shared = GramFactor(drug_f.weight, drug_f.labels, gram=self._drug_gram, scale=drug_f.scale)
        return [cell_f, shared], prior.nugget

    def _enter_line(self, c: int) -> None:
        """H_N and z = H_N Y_N for line c (block inverse of H without line c's pairs)."""
        cell = self.table.cell
        self.J = torch.as_tensor(np.nonzero(cell == c)[0], device=self.device)
        self.N = torch.as_tensor(np.nonzero(cell != c)[0], device=self.device)
        H_NJ = self.H[self.N][:, self.J]
        H_JJ = self.H[self.J][:, self.J]
        H_N = self.H[self.N][:, self.N]
        H_N -= H_NJ @ torch.linalg.solve(H_JJ, H_NJ.T)
        self.H_N, self.z = H_N, H_N @ self.Y[self.N]
        self._line = c

    def predict(self, c: int, test: np.ndarray, train: np.ndarray) -> np.ndarray:
        """(|test|, G) float32 predictions of the ``test`` pairs (line c) from the ``train`` pairs."""
        if self._line != c:
            self._enter_line(c)
        cell = self.table.cell
        own = train[cell[train] == c]
        if train.size - own.size != self.N.numel():
            raise ValueError("fold-out CV needs every pair of the other lines in the training set")
        op = self._operator(train)
        R = torch.as_tensor(own, device=self.device)
        T = torch.as_tensor(np.asarray(test), device=self.device)
        cols = torch.cat([R, T])
        r = R.numel()
        V = op.block(self.N, cols)  # (n_N, |R| + |T|)
        W = op.block(cols, cols)
        X = self.H_N @ V[:, :r]
        S = W[:r, :r] - V[:, :r].T @ X
        S.diagonal().add_(self.ridge)
        a_R = torch.cholesky_solve(self.Y[R] - V[:, :r].T @ self.z, torch.linalg.cholesky(S))
        a_N = self.z - X @ a_R
        P = V[:, r:].T @ a_N + W[r:, :r] @ a_R
        return P.cpu().numpy().astype(np.float32)

