"""Export pairs of a predictions store (:mod:`bigntk.apps.cmap.impute`) as a GCTX file.

GCTX layout (what cmapPy's ``parse`` and :mod:`bigntk.apps.cmap.ingest` read): genes are rows and
profiles columns; the HDF5 matrix ``/0/DATA/0/matrix`` is stored transposed, (n_profiles, n_genes)
float32; ``/0/META/ROW/id`` holds the gene ids, ``/0/META/COL`` the profile ids ``"{cell}:{drug}"``
and the columns ``cell_id``, ``pert_id`` and ``observed`` (1 for a measured profile, 0 for a
prediction). The file is written beside its path and renamed into place (never half written).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ... import persist

__all__ = ["export_gctx", "PAIRS"]

#: which pairs of the selection to export
PAIRS = ("unobserved", "observed", "all")


def _codes(ids: np.ndarray, wanted: Optional[Sequence[str]], what: str) -> np.ndarray:
    if wanted is None:
        return np.arange(len(ids))
    missing = sorted(set(map(str, wanted)) - set(ids.tolist()))
    if missing:
        raise ValueError(f"{len(missing)} {what}(s) not in the predictions store: "
                         + ", ".join(map(repr, missing[:5])))
    return np.nonzero(np.isin(ids, list(map(str, wanted))))[0]


def _bytes(values: Sequence[str]) -> np.ndarray:
    return np.char.encode(np.asarray(values, dtype=str), "utf-8")


def export_gctx(predictions: str | Path, path: str | Path, *, cells: Optional[Sequence[str]] = None,
                drugs: Optional[Sequence[str]] = None, pairs: str = "unobserved") -> int:
    """Write the ``pairs`` ("unobserved", "observed" or "all") of the selected ``cells`` × ``drugs`` (names;
    None = all) of a complete predictions store to the GCTX file ``path``; returns the number of profiles.
    Memory: one cell's (D, G) slab at a time."""
    import h5py
    import zarr

    if pairs not in PAIRS:
        raise ValueError(f"pairs must be one of {PAIRS}, got {pairs!r}")
    g = zarr.open_group(str(predictions), mode="r")
    if g.attrs.get("format") != "bigntk-predictions" or not g.attrs.get("complete"):
        raise ValueError(f"{predictions} is not a complete predictions store; run (or resume) impute first")
    cell_ids, drug_ids, gene_ids = (np.asarray(g[k][...].tolist(), dtype=str) for k in ("cell", "drug", "gene"))
    ci, di = _codes(cell_ids, cells, "cell"), _codes(drug_ids, drugs, "drug")
    obs = np.asarray(g["observed"][...])[np.ix_(ci, di)]
    want = {"unobserved": ~obs, "observed": obs, "all": np.ones_like(obs)}[pairs]
    pc, pd = np.nonzero(want)  # positions into ci, di; sorted by cell then drug
    if not pc.size:
        raise ValueError(f"no {pairs} pair among the selected cells and drugs: nothing to export")
    col_cell, col_drug = cell_ids[ci[pc]], drug_ids[di[pd]]
    with persist.atomic_output(Path(path)) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["version"] = np.bytes_("GCTX1.0")
        M = f.create_dataset("0/DATA/0/matrix", shape=(pc.size, gene_ids.size), dtype="float32",
                             chunks=(min(pc.size, 512), gene_ids.size))
        start = 0
        for c in np.unique(pc):
            rows = di[pd[pc == c]]
            M[start:start + rows.size] = np.asarray(g["imputed"][int(ci[c])])[rows]
            start += rows.size
        f.create_dataset("0/META/ROW/id", data=_bytes(gene_ids))
        f.create_dataset("0/META/COL/id", data=_bytes([f"{a}:{b}" for a, b in zip(col_cell, col_drug)]))
        f.create_dataset("0/META/COL/cell_id", data=_bytes(col_cell))
        f.create_dataset("0/META/COL/pert_id", data=_bytes(col_drug))
        f.create_dataset("0/META/COL/observed", data=obs[pc, pd].astype(np.int8))
    return int(pc.size)
