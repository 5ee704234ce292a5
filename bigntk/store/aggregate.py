"""Streaming aggregation of a store to one profile per (cell, drug) pair.

The profiles of a pair (replicates, doses, times) are combined by a NaN-aware mean, optionally
weighted by a per-profile weight column (e.g. ``distil_ss`` or ``1/replicates``: a weighted
consensus). Memory is bounded: the pairs are split into buckets whose float64 accumulators fit in
``max_bytes``, and the store is streamed once per bucket.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np
import scipy.sparse as sp
from ..progress import bar as progress_bar

from .observations import ObservationStore, ObservationWriter, open_store


@dataclass
class PairTable:
    """One profile per (cell, drug) pair, pairs sorted by (cell, drug).

    Y      : (n_pairs, n_genes) float32 aggregated profiles
    cell   : (n_pairs,) int32 cell codes;  drug : (n_pairs,) int32 drug codes
    count  : (n_pairs,) int32 number of profiles combined
    cell_names, drug_names, gene_ids : vocabularies of the store
    """

    Y: np.ndarray
    cell: np.ndarray
    drug: np.ndarray
    count: np.ndarray
    cell_names: np.ndarray
    drug_names: np.ndarray
    gene_ids: np.ndarray

    @property
    def n_pairs(self) -> int:
        return int(self.Y.shape[0])

    def subset(self, idx: np.ndarray) -> "PairTable":
        return PairTable(self.Y[idx], self.cell[idx], self.drug[idx], self.count[idx], self.cell_names,
                         self.drug_names, self.gene_ids)


def _pair_keys(store: ObservationStore) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys (n_pairs,) sorted int64, pair index of each profile, n_drugs)."""
    cell = store.labels("cell").astype(np.int64)
    drug = store.labels("drug").astype(np.int64)
    n_drugs = max(len(store.drug_names), int(drug.max(initial=-1)) + 1)
    keys, inverse = np.unique(cell * n_drugs + drug, return_inverse=True)
    return keys, inverse.astype(np.int64), n_drugs


def iter_pair_buckets(store: ObservationStore, *, weight: Optional[str] = None, max_bytes: float = 512e6,
                      progress: bool = True) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (Y_bucket (b, G) float32, cell (b,), drug (b,), count (b,)) for consecutive pair buckets."""
    keys, pair_of_row, n_drugs = _pair_keys(store)
    w_all = (np.ones(store.n_profiles) if weight is None
             else np.asarray(store.labels(weight), dtype=np.float64))
    if not np.isfinite(w_all).all() or (w_all < 0).any():
        raise ValueError(f"weight column {weight!r} must be finite and >= 0")
    G = store.n_genes
    per_bucket = max(1, int(max_bytes // (2 * 8 * G)))  # sums + weights, float64
    n_pairs = len(keys)
    counts_all = np.bincount(pair_of_row, minlength=n_pairs).astype(np.int32)
    n_buckets = -(-n_pairs // per_bucket)
    passes = f" ({n_buckets} passes over {store.n_profiles} profiles)" if n_buckets > 1 else ""
    bar = progress_bar(n_buckets * store.n_profiles, desc="aggregate" + passes, unit="prof", progress=progress)
    for b0 in range(0, n_pairs, per_bucket):
        b1 = min(b0 + per_bucket, n_pairs)
        S = np.zeros((b1 - b0, G))
        W = np.zeros((b1 - b0, G))
        for s, e, X in store.iter_chunks():
            p = pair_of_row[s:e]
            sel = np.nonzero((p >= b0) & (p < b1))[0]
            bar.update(e - s)
            if not sel.size:
                continue
            Xs = X[sel].astype(np.float64)
            finite = np.isfinite(Xs)
            A = sp.csr_matrix((w_all[s:e][sel], (p[sel] - b0, np.arange(sel.size))), shape=(b1 - b0, sel.size))
            S += A @ np.where(finite, Xs, 0.0)
            W += A @ finite.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            Y = np.where(W > 0, S / W, np.nan).astype(np.float32)
        k = keys[b0:b1]
        yield Y, (k // n_drugs).astype(np.int32), (k % n_drugs).astype(np.int32), counts_all[b0:b1]
    bar.close()


def aggregate(store: ObservationStore | str | Path, *, weight: Optional[str] = None, max_bytes: float = 512e6,
              progress: bool = True) -> PairTable:
    """Aggregate a store to a :class:`PairTable` in memory (NaN-aware, optionally weighted, mean)."""
    st = store if isinstance(store, ObservationStore) else open_store(store)
    parts = list(iter_pair_buckets(st, weight=weight, max_bytes=max_bytes, progress=progress))
    if not parts:
        G = st.n_genes
        parts = [(np.zeros((0, G), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32))]
    Y, c, d, n = (np.concatenate(x) for x in zip(*parts))
    return PairTable(Y, c, d, n, st.cell_names, st.drug_names, st.gene_ids)


def aggregate_to_store(store: ObservationStore | str | Path, out: str | Path, *, weight: Optional[str] = None,
                       max_bytes: float = 512e6, overwrite: bool = False, progress: bool = True) -> ObservationStore:
    """Aggregate out of core into a new store with one profile per pair (``replicate`` = count)."""
    st = store if isinstance(store, ObservationStore) else open_store(store)
    prov = {**st.provenance, "aggregated_from": str(st.path), "aggregation": f"mean weight={weight}"}
    w = ObservationWriter.create(out, st.gene_ids, cell_names=st.cell_names, drug_names=st.drug_names,
                                 chunk_rows=st.chunk_rows, provenance=prov, overwrite=overwrite)
    with w:
        for Y, c, d, n in iter_pair_buckets(st, weight=weight, max_bytes=max_bytes, progress=progress):
            w.append(Y, c, d, replicate=n)
    return open_store(out)
