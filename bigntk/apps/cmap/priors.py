"""The column prior of one cross-validation split, built from that split's training pairs only."""
from __future__ import annotations

import numpy as np

from ...baselines import make_baseline
from ...priors import Prior
from ...priors.cmap import mixed_prior, one_hot_prior, sparse_regime_prior
from ...store import PairTable

PRIORS = ("sparse", "onehot", "mixed-dnpp", "mixed-falrtc")


def split_prior(table: PairTable, train: np.ndarray, cols: np.ndarray, ref: int, s) -> Prior:
    """Prior over the pairs ``cols`` (in that order) from the training pairs ``train`` (settings ``s``:
    ``prior``, ``w``, ``nugget``, ``baseline_kwargs``).

    The cell means of the sparse prior and the mixed priors' baseline fits see only ``train``; a
    ``cols`` pair outside ``train`` gets the baseline's prediction as its imputed profile.
    """
    cell, drug = table.cell[cols], table.drug[cols]
    if s.prior == "onehot":
        return one_hot_prior(cell, drug, "both", nugget=s.nugget)
    if s.prior not in PRIORS:
        raise ValueError(f"unknown prior {s.prior!r}; use one of {', '.join(PRIORS)}")
    Ytr = table.Y[train]
    prior = sparse_regime_prior(Ytr, table.cell[train], table.drug[train], cell, drug, reference=ref,
                                n_cells=len(table.cell_names), n_drugs=len(table.drug_names), w=s.w,
                                nugget=s.nugget)
    if s.prior == "sparse":
        return prior
    name = s.prior.split("-", 1)[1]
    base = make_baseline(name, **s.baseline_kwargs.get(name, {})).fit(Ytr, table.cell[train], table.drug[train])
    is_train = np.isin(cols, train)
    imp = np.empty((cols.size, table.Y.shape[1]), dtype=np.float64)
    imp[is_train] = table.Y[cols[is_train]]
    if (~is_train).any():
        imp[~is_train] = base.predict(table.cell[cols[~is_train]], table.drug[cols[~is_train]])
    return mixed_prior(imp.T, prior, nugget=s.nugget)
