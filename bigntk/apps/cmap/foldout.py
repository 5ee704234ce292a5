"""Exact fold-out NTK cross-validation on CMap pairs: one factorisation, then a small solve per fold.

A fold hides test pairs T of one line c and trains on every other line's pairs N plus c's remaining
pairs R (all of them, or ``sparse_drugs`` of them). The prior rebuilds c's training mean from R, so
only the kernel rows of line c change between folds; K[N, N] is the same in every fold and is the
block of the kernel K over all pairs with every pair as training. With the Cholesky factor
K + λI = L Lᵀ computed once (float64), H = (K + λI)⁻¹ = L⁻ᵀL⁻¹ and, per line c (J = c's pairs),

    H_N = (K[N, N] + λI)⁻¹ = H[N, N] − H[N, J] H[J, J]⁻¹ H[J, N]     (block inverse)
    z   = H_N Y_N.

Per fold, with the fold's kernel V = K_f[N, R ∪ T] (V̄: V zero-padded to every pair) and
W = K_f[R ∪ T, R ∪ T], the quadratic form Q = Vᵀ H_N V comes from one triangular solve

    G = L⁻¹ V̄,   U = (L⁻¹[:, J])ᵀ G = (H V̄)[J],   Q = GᵀG − Uᵀ H[J, J]⁻¹ U,

and block elimination of the training matrix [[K_NN + λ, V_R], [V_Rᵀ, W_RR + λ]] gives

    S = W_RR + λI − Q_RR,   a_R = S⁻¹ (Y_R − V_Rᵀ z),   Ŷ_T = V_Tᵀ z + (W_TR − Q_TR) a_R,

which is the refit's prediction K_f[T, train] (K_f[train, train] + λI)⁻¹ Y_train exactly (up to
float64 rounding). Cost: one n³/3 factorisation; per line two triangular solves of n_c columns; per
fold one of |R| + |T| columns (n² (|R| + |T|) multiply-adds, half a GEMM's), against O(n³) per fold
for refits. Needs ~2 n² float64 in memory (:func:`foldout_bytes`).
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
    """Peak memory of :class:`FoldOut` on ``n_pairs`` pairs: the kernel and its Cholesky factor, float64."""
    return 2 * 8 * int(n_pairs) ** 2


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
        self.L = torch.linalg.cholesky(K)  # K + λI = L Lᵀ
        del K
        self.alpha = torch.cholesky_solve(self.Y, self.L)  # (n, G): the all-pairs fit, reused for every z
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
        """Per line c: L⁻¹[:, J], H[N, J], a factor of H[J, J] and z = H_N Y_N (module docstring), without
        forming H or H_N: H_N B = (H B̄)[N] − H[N, J] H[J, J]⁻¹ (H B̄)[J] for B̄ = B zero-padded to every
        pair (block inverse), and H Ȳ = α − H[:, J] Y_J."""
        from torch.linalg import solve_triangular

        cell = self.table.cell
        self.J = torch.as_tensor(np.nonzero(cell == c)[0], device=self.device)
        self.N = torch.as_tensor(np.nonzero(cell != c)[0], device=self.device)
        E_J = torch.zeros(self.n, self.J.numel(), dtype=torch.float64, device=self.device)
        E_J[self.J, torch.arange(self.J.numel(), device=self.device)] = 1.0
        self.Minv_J = solve_triangular(self.L, E_J, upper=False)  # L⁻¹[:, J]  (n, n_c)
        H_J = solve_triangular(self.L.T, self.Minv_J, upper=True)  # H[:, J] = L⁻ᵀ L⁻¹[:, J]
        self.H_NJ = H_J.index_select(0, self.N)
        self.L_JJ = torch.linalg.cholesky(H_J.index_select(0, self.J))
        HY = self.alpha - H_J @ self.Y[self.J]
        self.z = HY[self.N] - self.H_NJ @ torch.cholesky_solve(HY[self.J], self.L_JJ)
        self._line = c

    def _quadratic_form(self, V: torch.Tensor) -> torch.Tensor:
        """Vᵀ H_N V (k, k) for V (n_N, k) over N, from one triangular solve (module docstring)."""
        V_pad = V.new_zeros(self.n, V.shape[1])
        V_pad[self.N] = V
        G = torch.linalg.solve_triangular(self.L, V_pad, upper=False)  # L⁻¹ V̄
        U = self.Minv_J.T @ G  # (H V̄)[J]
        return G.T @ G - U.T @ torch.cholesky_solve(U, self.L_JJ)

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
        Q = self._quadratic_form(V)  # Vᵀ H_N V
        S = W[:r, :r] - Q[:r, :r]
        S.diagonal().add_(self.ridge)
        a_R = torch.cholesky_solve(self.Y[R] - V[:, :r].T @ self.z, torch.linalg.cholesky(S))
        P = V[:, r:].T @ self.z + (W[r:, :r] - Q[r:, :r]) @ a_R
        return P.cpu().numpy().astype(np.float32)
