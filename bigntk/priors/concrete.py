"""Concrete priors: explicit matrices, group factors (one-hot, embeddings) and concatenations; ``as_prior``."""
from __future__ import annotations

from dataclasses import replace
from typing import List, Optional, Sequence

import numpy as np
import torch

from ..backend import to_numpy
from .base import GramFactor, Prior


def _check_finite_2d(name: str, a: np.ndarray) -> np.ndarray:
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (features × columns), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _check_labels(labels) -> np.ndarray:
    lab = np.asarray(to_numpy(labels))
    if lab.ndim != 1:
        raise ValueError(f"labels must be 1-D (one per column), got shape {lab.shape}")
    if lab.size and lab.dtype.kind not in "iu":
        raise ValueError("labels must be integers; map names to codes first (e.g. np.unique(..., return_inverse=True))")
    if lab.size and lab.min() < 0:
        raise ValueError("labels must be >= 0")
    return lab.astype(np.int64)


class ExplicitPrior(Prior):
    """Explicit features Z of shape (p, n): column j describes column j of Y."""

    def __init__(self, Z) -> None:
        Z = _check_finite_2d("prior Z", np.asarray(to_numpy(Z), dtype=np.float64))
        self.Z = torch.from_numpy(Z)  # (p, n) float64, host; moved per block
        self.n = Z.shape[1]
        self.nugget = 0.0

    def _raw_gram(self, rows, cols, dtype):
        Z = self.Z.to(device=rows.device, dtype=dtype)
        return Z[:, rows].T @ Z[:, cols]

    def _raw_sq_norms(self, idx, dtype):
        Z = self.Z.to(device=idx.device, dtype=dtype)[:, idx]
        return (Z * Z).sum(0)


class FactorPrior(Prior):
    """Group prior: column j has the features of group ``labels[j]``; only the (g × g) group Gram is held.

    labels : (n,) int array of group ids in [0, g)
    gram   : (g, g) symmetric PSD Gram of the group features
    """

    def __init__(self, labels, gram) -> None:
        lab = _check_labels(labels)
        G = np.asarray(to_numpy(gram), dtype=np.float64)
        if G.ndim != 2 or G.shape[0] != G.shape[1]:
            raise ValueError(f"group gram must be square, got shape {G.shape}")
        if not np.isfinite(G).all():
            raise ValueError("group gram contains NaN or inf")
        if lab.size and lab.max() >= G.shape[0]:
            raise ValueError(f"label {lab.max()} out of range for a {G.shape[0]}-group gram")
        self.labels = lab
        self.group_gram = torch.from_numpy(G)
        self._labels_t = torch.from_numpy(lab)
        self.n = lab.size
        self.nugget = 0.0

    def _raw_gram(self, rows, cols, dtype):
        G = self.group_gram.to(device=rows.device, dtype=dtype)
        lab = self._labels_t.to(rows.device)
        return G[lab[rows][:, None], lab[cols][None, :]]

    def _raw_sq_norms(self, idx, dtype):
        d = self.group_gram.diagonal().to(device=idx.device, dtype=dtype)
        return d[self._labels_t.to(idx.device)[idx]]

    def factors(self) -> List[GramFactor]:
        return [GramFactor(1.0, self.labels, self.group_gram)]


class EmbeddingPrior(FactorPrior):
    """Column j = ``embedding[:, labels[j]]`` (embedding: p × g), e.g. the mean profile of a cell type."""

    def __init__(self, labels, embedding) -> None:
        E = _check_finite_2d("embedding", np.asarray(to_numpy(embedding), dtype=np.float64))
        super().__init__(labels, E.T @ E)
        self.embedding = E


def one_hot(labels, n_groups: Optional[int] = None) -> FactorPrior:
    """One-hot of a column label: ρ = 1 within a group, 0 across groups."""
    lab = _check_labels(labels)
    g = int(n_groups if n_groups is not None else (lab.max() + 1 if lab.size else 0))
    return FactorPrior(lab, np.eye(g))


class ConcatPrior(Prior):
    """Weighted concatenation [w_1·Z_1; w_2·Z_2; …] of priors over the same columns.

    Raw Gram = Σ_b w_b² raw_gram_b; the blocks' own nuggets are ignored (set the nugget on the
    concatenation). Factorised when every block is.
    """

    def __init__(self, priors: Sequence[Prior], weights: Optional[Sequence[float]] = None) -> None:
        if not priors:
            raise ValueError("concat needs at least one prior")
        ns = {p.n for p in priors}
        if len(ns) != 1:
            raise ValueError(f"priors to concatenate describe different numbers of columns: {sorted(ns)}")
        w = [1.0] * len(priors) if weights is None else [float(x) for x in weights]
        if len(w) != len(priors):
            raise ValueError("need one weight per prior")
        self.blocks = list(priors)
        self.weights = w
        self.n = ns.pop()
        self.nugget = 0.0

    def _raw_gram(self, rows, cols, dtype):
        return sum(w * w * p._raw_gram(rows, cols, dtype) for p, w in zip(self.blocks, self.weights))

    def _raw_sq_norms(self, idx, dtype):
        return sum(w * w * p._raw_sq_norms(idx, dtype) for p, w in zip(self.blocks, self.weights))

    def factors(self) -> Optional[List[GramFactor]]:
        out: List[GramFactor] = []
        for p, w in zip(self.blocks, self.weights):
            f = p.factors()
            if f is None:
                return None
            out += [replace(fb, weight=w * fb.weight) for fb in f]
        return out


def concat(priors: Sequence[Prior], weights: Optional[Sequence[float]] = None, nugget: float = 0.0) -> Prior:
    """Weighted concatenation of priors (see :class:`ConcatPrior`), with an optional nugget."""
    out = ConcatPrior(priors, weights)
    return out.with_nugget(nugget) if nugget else out


def as_prior(x) -> Prior:
    """Return ``x`` if it is a :class:`Prior`, else wrap a (p × n) array as an :class:`ExplicitPrior`."""
    return x if isinstance(x, Prior) else ExplicitPrior(x)


def from_imputation(Y_hat) -> ExplicitPrior:
    """Prior whose column j is column j of a previous imputation Y_hat (m × n)."""
    return ExplicitPrior(Y_hat)
