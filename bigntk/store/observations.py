"""Zarr v3 observation store: profiles × genes float32 plus per-profile labels, appendable in chunks.

Layout (a zarr v3 group, readable with plain ``zarr.open_group``; the arrays carry zarr v3
``dimension_names``, so ``xarray.open_zarr`` opens it as a Dataset with ``profile_ids`` and
``gene_ids`` as coordinates)::

    expression      (profile, gene) float32, chunks (chunk_rows, n_genes)
    cell            (profile,) int32   code into ``cell_names``
    drug            (profile,) int32   code into ``drug_names``
    dose, time      (profile,) float32 (NaN when unknown)
    replicate       (profile,) int32   (-1 when unknown)
    profile_ids     (profile,) str     (optional)
    gene_ids        (gene,) str
    cell_names, drug_names   (cell_names,), (drug_names,) str vocabularies (their own index coordinates)
    col_meta/<name> (profile,)  extra per-profile metadata (ingest keeps the source's columns)
    row_meta/<name> (gene,)     extra per-gene metadata

Group attributes: ``format`` = "bigntk-observations", ``format_version``, ``n_genes``,
``committed_rows`` (rows whose chunk was written completely), ``complete`` (the writer closed
normally) and ``provenance``.

Interrupted writes: each :meth:`ObservationWriter.append` first writes the arrays, then bumps
``committed_rows``. Rows beyond ``committed_rows`` are garbage from an interrupted append and are
never read. A store whose writer did not :meth:`close` is *incomplete*: :func:`open_store`
refuses it with a clear error unless ``allow_incomplete=True`` (then it reads the committed rows
and warns how many there are); :meth:`ObservationWriter.resume` continues appending after them.
"""
from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np
import zarr

from .. import persist

FORMAT = "bigntk-observations"
FORMAT_VERSION = 1

_PROFILE_ARRAYS = {"cell": ("int32", -1), "drug": ("int32", -1), "dose": ("float32", np.nan),
                   "time": ("float32", np.nan), "replicate": ("int32", -1)}
#: dimension names of the arrays (per-profile arrays and col_meta: "profile"; row_meta: "gene")
DIMS = {"expression": ("profile", "gene"), "gene_ids": ("gene",), "cell_names": ("cell_names",),
        "drug_names": ("drug_names",), **{k: ("profile",) for k in [*_PROFILE_ARRAYS, "profile_ids"]}}


#: arrays every observation store holds (module docstring); a store without one is damaged
_REQUIRED_ARRAYS = ("expression", *_PROFILE_ARRAYS, "gene_ids", "cell_names", "drug_names")


class StoreFormatError(ValueError):
    """The path is not a bigntk observation store, or one of another format version."""


class IncompleteStoreError(ValueError):
    """The store's writer did not finish (interrupted run); only the committed rows are valid."""


def default_chunk_rows(n_genes: int, target_mb: float = 32.0) -> int:
    """Profiles per chunk so that one expression chunk is about ``target_mb`` MB of float32."""
    return max(1, int(target_mb * 2**20 / (4 * max(n_genes, 1))))


def _str_array(group: zarr.Group, name: str, values: Sequence[str]) -> None:
    vals = np.asarray([str(v) for v in values], dtype=str) if len(values) else np.zeros(0, dtype=str)
    persist.create_array(group, name, vals, dims=DIMS[name], chunks=(max(len(vals), 1),))


def _coordinates(with_profile_ids: bool, per: str) -> dict:
    """The CF ``coordinates`` attribute that makes xarray attach the id arrays to an array of ``per``."""
    ids = (["profile_ids"] if with_profile_ids else []) + (["gene_ids"] if per == "expression" else [])
    return {"coordinates": " ".join(ids)} if ids else {}


def _to_str(a: np.ndarray) -> np.ndarray:
    """Any string array (incl. numpy StringDType from zarr) as a fixed-width unicode array."""
    return np.asarray(a.tolist(), dtype=str) if a.size else np.zeros(0, dtype=str)


def _meta_dtype(values: np.ndarray) -> np.ndarray:
    """Metadata column as numbers when numeric, else unicode strings (bytes decoded)."""
    v = np.asarray(values)
    if v.dtype.kind == "S":
        return np.char.decode(v, "utf-8").astype(str)
    if v.dtype.kind in "OU":
        return v.astype(str)
    return v


def _new_group(path: Path, gene_ids: Sequence[str], cell_names: Sequence[str], drug_names: Sequence[str],
               chunk_rows: Optional[int], with_profile_ids: bool, row_meta: Optional[Mapping[str, np.ndarray]],
               provenance: Optional[Dict[str, Any]]) -> zarr.Group:
    """The empty store's group at ``path`` (which does not exist yet)."""
    n_genes = len(gene_ids)
    rows = int(chunk_rows or default_chunk_rows(n_genes))
    g = zarr.open_group(str(path), mode="w-", zarr_format=3)
    g.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "n_genes": n_genes,
                    "committed_rows": 0, "complete": False, "provenance": dict(provenance or {})})
    persist.create_array(g, "expression", shape=(0, n_genes), dtype="float32", chunks=(rows, n_genes),
                         fill_value=np.nan, dims=DIMS["expression"], attrs=_coordinates(with_profile_ids, "expression"))
    for name, (dt, fill) in _PROFILE_ARRAYS.items():
        persist.create_array(g, name, shape=(0,), dtype=dt, chunks=(rows,), fill_value=fill, dims=DIMS[name],
                             attrs=_coordinates(with_profile_ids, name))
    if with_profile_ids:
        persist.create_array(g, "profile_ids", shape=(0,), dtype=str, chunks=(rows,), dims=DIMS["profile_ids"])
    _str_array(g, "gene_ids", gene_ids)
    _str_array(g, "cell_names", cell_names)
    _str_array(g, "drug_names", drug_names)
    rm = g.require_group("row_meta")
    for k, v in (row_meta or {}).items():
        v = _meta_dtype(v)
        if len(v) != n_genes:
            raise ValueError(f"row_meta[{k!r}] has {len(v)} values for {n_genes} genes")
        persist.create_array(rm, k, v, dims=("gene",), chunks=(n_genes,))
    g.require_group("col_meta")
    return g


class ObservationWriter:
    """Append profiles to a store in chunks; use as a context manager (closing marks it complete)."""

    def __init__(self, group: zarr.Group) -> None:
        self.group = group
        self.n_genes = int(group.attrs["n_genes"])
        self.chunk_rows = int(group["expression"].chunks[0])
        self.committed = int(group.attrs["committed_rows"])
        self._vocab = {k: {s: i for i, s in enumerate(group[f"{k}_names"][:].tolist())} for k in ("cell", "drug")}
        self._vocab_dirty = {"cell": False, "drug": False}
        self._finish: Optional[contextlib.ExitStack] = None  # lock (and swap) of a store being created
        self._fresh: Optional[Path] = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, gene_ids: Sequence[str], *, cell_names: Sequence[str] = (),
               drug_names: Sequence[str] = (), chunk_rows: Optional[int] = None, with_profile_ids: bool = False,
               row_meta: Optional[Mapping[str, np.ndarray]] = None, provenance: Optional[Dict[str, Any]] = None,
               overwrite: bool = False) -> "ObservationWriter":
        """New empty store at ``path`` for profiles over ``gene_ids``.

        The writer holds the store's lock until :meth:`close`. An existing ``path`` is replaced only with
        ``overwrite`` and only when it is an observation store (never another directory): the new store is
        written beside it and swapped in by :meth:`close`, so a failed or killed overwrite keeps the old
        one (``bigntk.persist``). A new store is written in place (an interrupted write is resumable); a
        write that fails with an exception removes it.
        """
        path = Path(path)
        if len(gene_ids) == 0:
            raise ValueError("gene_ids is empty")
        stack, fresh = contextlib.ExitStack(), False
        stack.enter_context(persist.exclusive(path))
        try:
            persist.restore_interrupted_swap(path)
            persist.check_replaceable(path, FORMAT, overwrite)
            persist.check_output_path(path, what="store", kind=FORMAT)  # not inside another store, writable
            fresh = not path.exists()
            target = path if fresh else stack.enter_context(persist.atomic_output(path))
            w = cls(_new_group(target, gene_ids, cell_names, drug_names, chunk_rows, with_profile_ids,
                               row_meta, provenance))
        except BaseException:
            if fresh:
                persist.remove(path)
            stack.__exit__(*sys.exc_info())
            raise
        w._finish, w._fresh = stack, (path if fresh else None)
        return w

    @classmethod
    def resume(cls, path: str | Path) -> "ObservationWriter":
        """Reopen an incomplete (or complete) store to append after its committed rows."""
        g = _open_group(path)
        g.attrs["complete"] = False
        w = cls(g)
        w._truncate(w.committed)
        return w

    # -- appending ----------------------------------------------------------------------------
    def _codes(self, kind: str, labels: Any) -> np.ndarray:
        lab = np.asarray(labels)
        if lab.dtype.kind in "iu":
            n = len(self._vocab[kind])
            if lab.size and (lab.min() < 0 or (n and lab.max() >= n)):
                raise ValueError(f"{kind} codes out of range for a vocabulary of {n} names")
            return lab.astype(np.int32)
        if lab.dtype.kind == "S":
            lab = np.char.decode(lab, "utf-8")
        vocab = self._vocab[kind]
        uniq, inv = np.unique(lab.astype(str), return_inverse=True)
        codes = np.empty(len(uniq), dtype=np.int32)
        for i, name in enumerate(uniq.tolist()):
            if name not in vocab:
                vocab[name] = len(vocab)
                self._vocab_dirty[kind] = True
            codes[i] = vocab[name]
        return codes[inv]

    def _truncate(self, n: int) -> None:
        for name in ["expression", *_PROFILE_ARRAYS, *(["profile_ids"] if "profile_ids" in self.group else [])]:
            a = self.group[name]
            a.resize((n, *a.shape[1:]))
        for _, a in self.group["col_meta"].arrays():
            a.resize((n,))

    def append(self, X: np.ndarray, cell: Any, drug: Any, *, dose: Any = None, time: Any = None,
               replicate: Any = None, profile_ids: Optional[Sequence[str]] = None,
               col_meta: Optional[Mapping[str, np.ndarray]] = None) -> int:
        """Append ``X`` (k, n_genes) with labels (k,) (codes or names); returns the new row count.

        Null values (the CMap −666) must already be NaN. The rows count as stored only once this
        call returns (``committed_rows`` is written last).
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_genes:
            raise ValueError(f"X must have shape (k, {self.n_genes}), got {X.shape}")
        k = X.shape[0]
        cols: Dict[str, np.ndarray] = {"cell": self._codes("cell", cell), "drug": self._codes("drug", drug)}
        for name, v in (("dose", dose), ("time", time), ("replicate", replicate)):
            if v is not None:
                cols[name] = np.asarray(v, dtype=_PROFILE_ARRAYS[name][0])
        for name, v in cols.items():
            if v.shape != (k,):
                raise ValueError(f"{name} must have shape ({k},), got {v.shape}")
        start, stop = self.committed, self.committed + k
        self._truncate(stop)  # also drops garbage rows of an interrupted append
        with zarr.config.set({"array.write_empty_chunks": True}):  # an all-NaN chunk is data too
            self.group["expression"][start:stop] = X
        for name, v in cols.items():
            self.group[name][start:stop] = v
        if profile_ids is not None:
            if "profile_ids" not in self.group:
                raise ValueError("store was created without profile ids (with_profile_ids=False)")
            self.group["profile_ids"][start:stop] = np.asarray(profile_ids, dtype=str)
        cm = self.group["col_meta"]
        for name, v in (col_meta or {}).items():
            v = _meta_dtype(v)
            if name not in cm:
                if start:
                    raise ValueError(f"col_meta[{name!r}] first given after {start} rows")
                persist.create_array(cm, name, shape=(stop,), dtype=v.dtype if v.dtype.kind != "U" else str,
                                     chunks=(self.chunk_rows,), dims=("profile",))
            cm[name][start:stop] = v
        for kind in ("cell", "drug"):
            if self._vocab_dirty[kind]:
                names = sorted(self._vocab[kind], key=self._vocab[kind].get)
                _str_array(self.group, f"{kind}_names", names)
                self._vocab_dirty[kind] = False
        self.committed = stop
        self.group.attrs["committed_rows"] = stop  # commit point
        return stop

    def close(self) -> None:
        """Mark the store complete (a store never closed is reported as interrupted), swap a replacing
        store into place and release the lock."""
        self.group.attrs["complete"] = True
        finish, self._finish = self._finish, None
        if finish is not None:
            finish.close()

    def abort(self, exc_info: tuple = (None, None, None)) -> None:
        """Give up a write that failed: a replacing store is discarded (the old one stays), a new one removed."""
        finish, self._finish = self._finish, None
        if finish is not None:
            if self._fresh is not None:
                persist.remove(self._fresh)
            finish.__exit__(*exc_info)

    def __enter__(self) -> "ObservationWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort((exc_type, exc, tb))


def _open_group(path: str | Path) -> zarr.Group:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no observation store at {path}")
    try:
        g = zarr.open_group(str(path), mode="r+")
    except Exception as err:  # noqa: BLE001 - any zarr failure means "not a store"
        raise StoreFormatError(f"{path} is not a zarr group: {err}") from err
    fmt, ver = g.attrs.get("format"), g.attrs.get("format_version")
    if fmt != FORMAT:
        raise StoreFormatError(f"{path} is not a bigntk observation store (format={fmt!r})")
    if ver != FORMAT_VERSION:
        raise StoreFormatError(f"{path} has store format version {ver}; this bigntk reads version "
                               f"{FORMAT_VERSION} (re-ingest the data with this version)")
    missing = [name for name in _REQUIRED_ARRAYS if name not in g]
    if missing:
        raise StoreFormatError(f"{path} is damaged: array(s) {', '.join(missing)} are missing; ingest, "
                               "synthesise or aggregate it again")
    return g


class ObservationStore:
    """Read access to the committed rows of a store (see the module docstring for the layout)."""

    def __init__(self, path: str | Path, *, allow_incomplete: bool = False) -> None:
        self.path = Path(path)
        g = _open_group(path)
        self.group = g
        self.n_profiles = int(g.attrs["committed_rows"])
        self.complete = bool(g.attrs["complete"])
        if not self.complete:
            msg = (f"store {self.path} is incomplete: its writer was interrupted after {self.n_profiles} "
                   f"committed profiles")
            if not allow_incomplete:
                raise IncompleteStoreError(msg + "; rerun the command that wrote it with --overwrite (Python: "
                                           "allow_incomplete=True reads those rows, ObservationWriter.resume "
                                           "continues the write)")
            warnings.warn(msg + "; reading the committed rows only", RuntimeWarning, stacklevel=2)
        self.n_genes = int(g.attrs["n_genes"])
        self.chunk_rows = int(g["expression"].chunks[0])
        if self.complete:  # a missing chunk would read as NaN, silently: damage is an error
            persist.require_chunks(g["expression"], str(self.path))

    @property
    def gene_ids(self) -> np.ndarray:
        return _to_str(self.group["gene_ids"][:])

    @property
    def cell_names(self) -> np.ndarray:
        return _to_str(self.group["cell_names"][:])

    @property
    def drug_names(self) -> np.ndarray:
        return _to_str(self.group["drug_names"][:])

    @property
    def provenance(self) -> Dict[str, Any]:
        return dict(self.group.attrs.get("provenance", {}))

    def labels(self, name: str) -> np.ndarray:
        """Per-profile array ``name`` (cell, drug, dose, time, replicate, profile_ids or a col_meta column)."""
        if name in _PROFILE_ARRAYS or name == "profile_ids":
            a = self.group[name]
        elif name in self.group["col_meta"]:
            a = self.group["col_meta"][name]
        else:
            raise KeyError(f"no per-profile array {name!r} in {self.path}")
        out = a[: self.n_profiles]
        return _to_str(out) if out.dtype.kind not in "biufc" else out

    def col_meta_names(self) -> list[str]:
        return sorted(k for k, _ in self.group["col_meta"].arrays())

    def row_meta(self, name: str) -> np.ndarray:
        out = self.group["row_meta"][name][:]
        return _to_str(out) if out.dtype.kind not in "biufc" else out

    def read(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """Expression rows [start, stop) as a (k, n_genes) float32 array."""
        stop = self.n_profiles if stop is None else min(stop, self.n_profiles)
        return self.group["expression"][start:stop]

    def iter_chunks(self, rows: Optional[int] = None) -> Iterator[Tuple[int, int, np.ndarray]]:
        """Yield (start, stop, X) over the committed rows, ``rows`` profiles at a time (default: one chunk)."""
        step = int(rows or self.chunk_rows)
        for s in range(0, self.n_profiles, step):
            e = min(s + step, self.n_profiles)
            yield s, e, self.read(s, e)

    def __repr__(self) -> str:
        return (f"ObservationStore({str(self.path)!r}, profiles={self.n_profiles}, genes={self.n_genes}, "
                f"cells={self.group['cell_names'].shape[0]}, drugs={self.group['drug_names'].shape[0]})")


def open_store(path: str | Path, *, allow_incomplete: bool = False) -> ObservationStore:
    """Open a store for reading (clear errors for missing, foreign, other-version or incomplete stores)."""
    return ObservationStore(path, allow_incomplete=allow_incomplete)
