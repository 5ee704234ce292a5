"""Ingest CMap GCTX (HDF5, via h5py) and GCT (text, streamed line by line) into an observation store.

Conventions: a GCT(X) matrix is genes (rows) × profiles (columns); the store is profiles × genes.
Null values (−666) become NaN. Ids and metadata are kept exactly as in the file (the same strings
cmapPy's ``parse`` returns); GCT metadata columns that parse as numbers are stored as numbers.
The cell and drug of a profile come from the column metadata fields ``cell_id`` and ``pert_id``
(configurable); dose and time are parsed from ``pert_dose``/``pert_idose`` and
``pert_time``/``pert_itime`` when present.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import h5py
import numpy as np

from ...progress import bar as progress_bar
from ...store import ObservationWriter, open_store, ObservationStore

NULL_VALUE = -666.0
_LANDMARK_FIELDS = ("pr_is_lm", "pr_is_lmark", "is_lm", "pr_is_landmark")  # cmapPy / GEO gene_info names
_NUM = re.compile(r"^\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)")


def _decode(a: np.ndarray) -> np.ndarray:
    """Bytes to str: UTF-8, falling back to Latin-1 for old files (e.g. 'µM' written as 0xB5)."""
    a = np.asarray(a)
    if a.dtype.kind != "S":
        return a
    try:
        return np.char.decode(a, "utf-8").astype(str)
    except UnicodeDecodeError:
        return np.asarray([b.decode("utf-8", errors="strict") if _is_utf8(b) else b.decode("latin-1")
                           for b in a.tolist()], dtype=str)


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _leading_number(values: np.ndarray) -> np.ndarray:
    """'10 uM' -> 10.0, '24 h' -> 24.0, numbers pass through, else NaN."""
    v = np.asarray(values)
    if v.dtype.kind in "iuf":
        out = v.astype(np.float32)
        out[out == NULL_VALUE] = np.nan
        return out
    out = np.full(v.shape, np.nan, dtype=np.float32)
    for i, s in enumerate(v.astype(str).tolist()):
        m = _NUM.match(s)
        if m and s.strip() != "-666":
            out[i] = float(m.group(1))
    return out


def _landmark_mask(row_meta: Dict[str, np.ndarray]) -> np.ndarray:
    for f in _LANDMARK_FIELDS:
        if f in row_meta:
            v = row_meta[f]
            if v.dtype.kind in "iuf":
                return v.astype(float) == 1
            return np.isin(np.char.lower(v.astype(str)), ["1", "1.0", "true", "y", "yes"])
    raise ValueError(f"--landmark-only needs a row metadata field among {_LANDMARK_FIELDS}; none found")


def _profile_labels(col_meta: Dict[str, np.ndarray], cell_field: str, drug_field: str) -> Dict[str, np.ndarray]:
    for f in (cell_field, drug_field):
        if f not in col_meta:
            raise ValueError(f"column metadata has no field {f!r} (fields: {sorted(col_meta)})")
    out = {"cell": col_meta[cell_field].astype(str), "drug": col_meta[drug_field].astype(str)}
    for name, fields in (("dose", ("pert_dose", "pert_idose")), ("time", ("pert_time", "pert_itime"))):
        f = next((f for f in fields if f in col_meta), None)
        if f is not None:
            out[name] = _leading_number(col_meta[f])
    return out


# -- GCTX -------------------------------------------------------------------------------------------
def read_gctx_meta(path: str | Path) -> Tuple[np.ndarray, Dict[str, np.ndarray], np.ndarray, Dict[str, np.ndarray]]:
    """(row ids, row metadata, column ids, column metadata) of a GCTX file, decoded to str."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable GCTX (HDF5) file ({err}); check the file or export it "
                         "again") from None
    with f:
        for need in ("0/DATA/0/matrix", "0/META/ROW/id", "0/META/COL/id"):
            if need not in f:
                raise ValueError(f"{path} is not a GCTX file (no /{need})")
        rm = {k: _decode(v[:]) for k, v in f["0/META/ROW"].items()}
        cm = {k: _decode(v[:]) for k, v in f["0/META/COL"].items()}
    return rm.pop("id").astype(str), rm, cm.pop("id").astype(str), cm


def _check_unique(path: Path, ids: np.ndarray, what: str) -> None:
    """Refuse repeated ids: a profile or gene id names one row or column of the file."""
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        first = uniq[np.argmax(counts > 1)]
        raise ValueError(f"{path}: {int((counts > 1).sum())} {what} ids occur more than once (e.g. {str(first)!r}, "
                         f"{int(counts.max())} times); ids must be unique")


def _check_finite(path: Path, X: np.ndarray, start: int, col_ids: np.ndarray, row_ids: np.ndarray) -> None:
    """Refuse ±inf values (a missing value is NaN or the CMap null -666, never infinite)."""
    bad = np.isinf(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{path}: {int(bad.sum())} infinite values (first at profile {str(col_ids[start + i])!r}, "
                         f"gene {str(row_ids[j])!r}); fix the file or mark missing values as NaN / -666")


def iter_gctx(path: str | Path, chunk: int = 4096) -> Iterator[Tuple[int, int, np.ndarray]]:
    """Yield (start, stop, X (k, n_genes) float32 with NaN for nulls) over the profiles of a GCTX file."""
    with h5py.File(path, "r") as f:
        M = f["0/DATA/0/matrix"]  # stored (n_profiles, n_genes): HDF5 is row-major, GCT(X) is transposed
        for s in range(0, M.shape[0], chunk):
            X = np.asarray(M[s:s + chunk], dtype=np.float32)
            X[X == NULL_VALUE] = np.nan
            yield s, min(s + chunk, M.shape[0]), X


# -- GCT ------------------------------------------------------------------------------------------
def _parse_column(values: List[str]) -> np.ndarray:
    """Metadata strings as int, then float, else str (cmapPy-like typing)."""
    a = np.asarray(values, dtype=str)
    for t in (np.int64, np.float64):
        try:
            return a.astype(t)
        except ValueError:
            pass
    return a


def read_gct(path: str | Path, *, progress: bool = True):
    """Stream a GCT v1.2/v1.3 text file; returns (X (n_profiles, n_genes) float32, row ids, row meta, col ids, col meta).

    The data lines (one per gene) are parsed one at a time into a preallocated float32 matrix, so
    memory is the matrix itself, not the text.
    """
    with open(path, "r") as fh:
        version = fh.readline().strip()
        if not version:
            raise ValueError(f"{path} is empty; a GCT file starts with the line #1.2 or #1.3")
        if version not in ("#1.2", "#1.3"):
            raise ValueError(f"{path}: unsupported GCT version line {version!r} (want #1.2 or #1.3)")
        line = fh.readline()
        try:
            dims = [int(x) for x in line.split("\t") if x.strip()]
            n_rows, n_cols = dims[0], dims[1]
            n_rdesc, n_cdesc = (dims[2], dims[3]) if version == "#1.3" else (1, 0)
        except (ValueError, IndexError):
            fields = "rows, columns, row fields, column fields" if version == "#1.3" else "rows, columns"
            raise ValueError(f"{path}: line 2 must hold the tab-separated dimensions ({fields}), "
                             f"got {line.strip()!r}") from None
        header = fh.readline().rstrip("\n").split("\t")
        if len(header) != 1 + n_rdesc + n_cols:
            raise ValueError(f"{path}: header has {len(header)} fields, expected {1 + n_rdesc + n_cols}")
        col_ids = np.asarray(header[1 + n_rdesc:], dtype=str)
        row_fields = header[1:1 + n_rdesc]
        cm: Dict[str, np.ndarray] = {}
        for _ in range(n_cdesc):
            parts = fh.readline().rstrip("\n").split("\t")
            cm[parts[0]] = _parse_column(parts[1 + n_rdesc:])
        X = np.empty((n_cols, n_rows), dtype=np.float32)
        row_ids: List[str] = []
        rmeta: List[List[str]] = [[] for _ in row_fields]
        for i in progress_bar(n_rows, iterable=range(n_rows), desc="gct", unit="gene", progress=progress):
            parts = fh.readline().rstrip("\n").split("\t")
            if len(parts) != 1 + n_rdesc + n_cols:
                raise ValueError(f"{path}: data line {i + 1} has {len(parts)} fields, expected {1 + n_rdesc + n_cols}")
            row_ids.append(parts[0])
            for j in range(n_rdesc):
                rmeta[j].append(parts[1 + j])
            vals = np.asarray([v if v not in ("", "NA", "na", "NaN", "nan") else "nan" for v in parts[1 + n_rdesc:]],
                              dtype=np.float32)
            vals[vals == NULL_VALUE] = np.nan
            X[:, i] = vals
    rm = {f: _parse_column(v) for f, v in zip(row_fields, rmeta)} if version == "#1.3" else {}
    return X, np.asarray(row_ids, dtype=str), rm, col_ids, cm


# -- to a store -----------------------------------------------------------------------------------
def ingest(path: str | Path, store: str | Path, *, landmark_only: bool = False, cell_field: str = "cell_id",
           drug_field: str = "pert_id", chunk: int = 4096, overwrite: bool = False,
           progress: bool = True) -> ObservationStore:
    """Ingest a ``.gctx`` or ``.gct`` file into a new observation store at ``store``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".gctx":
        row_ids, rm, col_ids, cm = read_gctx_meta(path)
        blocks = iter_gctx(path, chunk)
    elif suffix == ".gct":
        X_all, row_ids, rm, col_ids, cm = read_gct(path, progress=progress)
        blocks = ((s, min(s + chunk, len(col_ids)), X_all[s:s + chunk]) for s in range(0, len(col_ids), chunk))
    else:
        raise ValueError(f"{path}: expected a .gctx or .gct file")
    _check_unique(path, col_ids, "profile (column)")
    _check_unique(path, row_ids, "gene (row)")
    genes = np.ones(len(row_ids), dtype=bool)
    if landmark_only:
        genes = _landmark_mask(rm)
    labels = _profile_labels(cm, cell_field, drug_field)
    prov = {"source": str(path.resolve()), "source_format": suffix[1:], "landmark_only": bool(landmark_only),
            "cell_field": cell_field, "drug_field": drug_field}
    w = ObservationWriter.create(store, row_ids[genes], with_profile_ids=True,
                                 row_meta={k: v[genes] for k, v in rm.items()}, provenance=prov, overwrite=overwrite)
    with w:
        for s, e, X in blocks:
            _check_finite(path, X, s, col_ids, row_ids)
            w.append(X[:, genes], labels["cell"][s:e], labels["drug"][s:e],
                     dose=labels["dose"][s:e] if "dose" in labels else None,
                     time=labels["time"][s:e] if "time" in labels else None,
                     profile_ids=col_ids[s:e], col_meta={k: v[s:e] for k, v in cm.items()})
    return open_store(store)
