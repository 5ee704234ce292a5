"""Impute every unmeasured (cell, drug) pair of a store into a resumable predictions store.

:func:`impute` aggregates the replicates of an observation store (:func:`bigntk.store.aggregate`),
fits once on every measured pair of the selected cells × drugs (all by default) and writes the
completed cube chunk by chunk into a zarr v3 group that ``xarray.open_zarr`` opens as a Dataset::

    imputed   (cell, drug, gene) float32, chunks (1, chunk_drugs, G): the measured (aggregated)
              profile where ``observed``, bitwise unchanged; the prediction elsewhere
    observed  (cell, drug) bool
    done      (cell, drug_chunk) uint32: CRC32 of each chunk written (0 = not yet)
    cell, drug, gene   coordinates: the store's own ids (str)
    _state/alpha       (n_train, G) float64 dual coefficients of the NTK fit (checksum in its attrs)

Group attributes: ``format`` = "bigntk-predictions", ``format_version``, ``config`` (method, prior,
depth, ridge, nugget, w, solver, reference, selection, dtype and ``input_fingerprint``: a hash of the
aggregated data and ids, independent of paths), the same keys at the top level for reading, ``plan``
(chunk_drugs, memory budget), ``bigntk_version``, ``n_observed`` / ``n_imputed``, ``complete`` and,
when complete, ``checksum`` (sha256 over the chunks' CRC32s).

Memory: the fit holds the training pairs (n_train × G) and, for the direct solver, the n_train²
kernel; a chunk holds K(chunk, train) and its output, sized to the memory budget; the cube is never
held (except by ``falrtc``, a whole-tensor method, which holds its tensor).

Resume: an EigenPro fit checkpoints beside the store (``OUT.fit-checkpoint``, removed once α is
saved) and resumes from it, a chunk is marked in ``done`` only after its data are written, α is saved
before the first chunk, and the chunking and memory budget are fixed when the store is created; a run killed at any
point and started again with the same configuration writes only the missing chunks and ends bitwise
equal to an uninterrupted run (same device and thread count: a GEMM's summation order depends on
them). A store of another configuration is refused (:class:`PredictionsExistError`); with
``overwrite`` the new store is written beside it and replaces it only once complete, so a failed or
killed overwrite keeps the old predictions.
"""
from __future__ import annotations

import contextlib
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from ... import persist
from ...backend import compute as resolve_compute
from ...progress import bar as progress_bar
from ...store import ObservationStore, PairTable, aggregate, open_store
from ._impute_models import BaselineModel, NTKModel, check_method

__all__ = ["impute", "PredictionsExistError", "FORMAT", "FORMAT_VERSION", "Selection", "select", "fingerprint"]

FORMAT = "bigntk-predictions"
FORMAT_VERSION = 1
#: one imputed chunk is at most this many bytes (float32), whatever the memory budget
CHUNK_MAX_BYTES = 16 * 2**20


class PredictionsExistError(FileExistsError):
    """The output path holds a predictions store of another configuration (or something else)."""


@dataclass
class Selection:
    """The cube to complete: selected cells × drugs and their measured pairs.

    Y          : (n_train, G) float32 aggregated profiles of the measured pairs, sorted by (cell, drug)
    cell, drug : (n_train,) int64 codes into ``cell_ids`` / ``drug_ids`` (the selection's own codes)
    cell_ids, drug_ids, gene_ids : (C,), (D,), (G,) str ids of the store
    reference  : code of the reference line (the sparse prior's e_d), or None
    """

    Y: np.ndarray
    cell: np.ndarray
    drug: np.ndarray
    cell_ids: np.ndarray
    drug_ids: np.ndarray
    gene_ids: np.ndarray
    reference: Optional[int]

    @property
    def shape(self) -> tuple:
        return (len(self.cell_ids), len(self.drug_ids), len(self.gene_ids))

    @property
    def train_index(self) -> np.ndarray:
        """(n_train,) int64 flat cube index cell · D + drug of each measured pair."""
        return self.cell * len(self.drug_ids) + self.drug


def _pick(names: np.ndarray, wanted: Optional[Sequence[str]], what: str) -> np.ndarray:
    """Codes (in store order) of the ``wanted`` names; all codes when None; one error naming the unknown."""
    if wanted is None:
        return np.arange(len(names))
    wanted = [str(w) for w in wanted]
    if not wanted:
        raise ValueError(f"the {what} selection is empty")
    missing = sorted(set(wanted) - set(names.tolist()))
    if missing:
        shown = ", ".join(map(repr, missing[:5])) + (" …" if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} {what}(s) not in the store: {shown}")
    return np.nonzero(np.isin(names, wanted))[0]


def select(table: PairTable, cells: Optional[Sequence[str]] = None, drugs: Optional[Sequence[str]] = None,
           reference: Optional[str] = None) -> Selection:
    """The selected cells × drugs (names; None = all) with their measured pairs, re-coded."""
    cnames, dnames = np.asarray(table.cell_names).astype(str), np.asarray(table.drug_names).astype(str)
    ci, di = _pick(cnames, cells, "cell"), _pick(dnames, drugs, "drug")
    cmap = np.full(len(cnames), -1, np.int64)
    cmap[ci] = np.arange(ci.size)
    dmap = np.full(len(dnames), -1, np.int64)
    dmap[di] = np.arange(di.size)
    keep = np.nonzero((cmap[table.cell] >= 0) & (dmap[table.drug] >= 0))[0]
    if not keep.size:
        raise ValueError("no measured pair among the selected cells and drugs: nothing to fit")
    Y = np.asarray(table.Y[keep], np.float32)
    if not np.isfinite(Y).all():
        raise ValueError("aggregated profiles contain NaN; impute or drop genes with missing values first")
    cell, drug = cmap[table.cell[keep]], dmap[table.drug[keep]]
    order = np.lexsort((drug, cell))
    sel = Selection(Y[order], cell[order], drug[order], cnames[ci], dnames[di],
                    np.asarray(table.gene_ids).astype(str), None)
    sel.reference = _reference(sel, reference)
    return sel


def _reference(sel: Selection, name: Optional[str]) -> int:
    """Code of the reference line: ``name``, else the selected line with most measured drugs."""
    counts = np.bincount(sel.cell, minlength=len(sel.cell_ids))
    if name is None:
        return int(np.argmax(counts))
    hits = np.nonzero(sel.cell_ids == str(name))[0]
    if not hits.size:
        raise ValueError(f"reference line {name!r} is not among the selected cells")
    if counts[hits[0]] == 0:
        raise ValueError(f"reference line {name!r} has no measured pair in the selection")
    return int(hits[0])


def fingerprint(sel: Selection) -> str:
    """Path-independent ``sha256:`` hash of the aggregated training data and the cube's ids."""
    return persist.checksum({"Y": sel.Y, "cell": sel.cell, "drug": sel.drug, "cell_ids": sel.cell_ids,
                             "drug_ids": sel.drug_ids, "gene_ids": sel.gene_ids})


def _config(sel: Selection, method: str, prior: str, depth: int, ridge: float, nugget: float, w: float,
            solver: str, solver_options: dict, baseline_options: dict, dtype: str,
            cells, drugs, n_cells: int, n_drugs: int) -> Dict[str, Any]:
    """The identity of a predictions store (a resumed run must match it exactly); a selection of every
    cell (drug) of the store (``n_cells``, ``n_drugs``) is recorded as None, like no selection."""
    ntk = method == "ntk"
    uses_ref = ntk and prior != "onehot"
    return {"method": method, "prior": prior if ntk else None, "depth": int(depth) if ntk else None,
            "ridge": float(ridge) if ntk else None, "nugget": float(nugget) if ntk else None,
            "w": float(w) if uses_ref else None, "solver": solver if ntk else None,
            "solver_options": dict(solver_options) if ntk else {}, "baseline_options": dict(baseline_options),
            "reference": str(sel.cell_ids[sel.reference]) if uses_ref else None,
            "cells": None if cells is None or n_cells == len(sel.cell_ids) else sel.cell_ids.tolist(),
            "drugs": None if drugs is None or n_drugs == len(sel.drug_ids) else sel.drug_ids.tolist(),
            "dtype": dtype if ntk else "float32", "input_fingerprint": fingerprint(sel)}


def _plan(model: Any, sel: Selection, budget: int, chunk_drugs: Optional[int]) -> Dict[str, int]:
    """Chunk size (drugs of one cell): K(chunk, train) and the output within ``budget``."""
    C, D, G = sel.shape
    if chunk_drugs is None:
        per_drug = model.bytes_per_query + G * 20  # K row (entry cost × n_train) + float32 out + float64 acc
        chunk_drugs = max(1, min(D, budget // max(per_drug, 1), CHUNK_MAX_BYTES // (4 * G)))
    elif int(chunk_drugs) < 1:
        raise ValueError(f"chunk_drugs must be >= 1, got {chunk_drugs}")
    return {"chunk_drugs": int(min(int(chunk_drugs), D)), "memory_budget": int(budget)}


# -- the store ----------------------------------------------------------------------------------------
def _normalise(config: Dict[str, Any]) -> Dict[str, Any]:
    """``config`` as it reads back from the group's JSON attributes."""
    import json

    return json.loads(json.dumps(config))


def _refuse(path: Path, why: str) -> PredictionsExistError:
    return PredictionsExistError(f"{path} {why}; use --overwrite (overwrite=True) to replace it, or another --out")


def _check_out(out: Path) -> None:
    """Refuse, before any computing, an ``out`` that is not (and cannot become) a predictions store."""
    if (out.exists() or out.is_symlink()) and persist.store_kind(out) != FORMAT:
        what = "is a file" if out.is_file() else "exists and is not a bigntk predictions store"
        raise PredictionsExistError(f"{out} {what}: refusing to write into it; choose another --out")
    persist.check_output_path(out, what="predictions store", kind=FORMAT)


def _open_existing(out: Path, config: Dict[str, Any], chunk_drugs: Optional[int], overwrite: bool) -> Any:
    """The store at ``out`` to resume (same configuration), or None when a fresh one must be created."""
    import zarr

    if not (out.exists() or out.is_symlink()):
        return None
    if overwrite:
        return None  # replaced by the new store once it is complete (impute)
    group = zarr.open_group(str(out), mode="r+")
    old = dict(group.attrs.get("config", {}))
    new = _normalise(config)
    if old != new:
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise _refuse(out, f"holds predictions of another configuration (differs in {', '.join(keys)})")
    plan = dict(group.attrs.get("plan", {}))
    if chunk_drugs is not None and plan and int(chunk_drugs) != plan.get("chunk_drugs"):
        raise _refuse(out, f"was chunked by {plan.get('chunk_drugs')} drugs, not {chunk_drugs}")
    return group


def _create(out: Path, sel: Selection, config: Dict[str, Any], plan: Dict[str, int], source: str) -> Any:
    """Lay out a fresh predictions store (module docstring) beside ``out`` and rename it into place, so a
    run killed while laying it out leaves no half store at ``out``."""
    import zarr

    from ... import __version__

    C, D, G = sel.shape
    cd = plan["chunk_drugs"]
    top = {k: config[k] for k in ("method", "prior", "depth", "ridge", "nugget", "w", "solver", "reference",
                                  "input_fingerprint")}
    attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "complete": False, "initialized": True,
             "config": _normalise(config), **top, "plan": plan, "source": source, "bigntk_version": __version__,
             "n_train": int(sel.Y.shape[0]), "n_observed": int(sel.Y.shape[0]),
             "n_imputed": int(C * D - sel.Y.shape[0])}
    with persist.atomic_output(out) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for name, ids in (("cell", sel.cell_ids), ("drug", sel.drug_ids), ("gene", sel.gene_ids)):
            persist.create_array(group, name, np.asarray(ids, dtype=str), dims=(name,), chunks=(max(len(ids), 1),))
        observed = np.zeros((C, D), bool)
        observed[sel.cell, sel.drug] = True
        persist.create_array(group, "observed", observed, dims=("cell", "drug"),
                             chunks=(max(1, min(C, 2**24 // max(D, 1))), D))
        persist.create_array(group, "imputed", shape=(C, D, G), dtype="float32", chunks=(1, cd, G),
                             fill_value=float("nan"), dims=("cell", "drug", "gene"))
        persist.create_array(group, "done", shape=(C, -(-D // cd)), dtype="uint32", chunks=(1, 1), fill_value=0,
                             dims=("cell", "drug_chunk"))
        group.attrs.update(attrs)
    return zarr.open_group(str(out), mode="r+")


def fit_checkpoint(out: Path) -> Path:
    """Where an iterative NTK fit for the store ``out`` keeps its checkpoint until α is saved in the store."""
    return out.with_name(out.name + ".fit-checkpoint")


def _state(group: Any, model: Any, sel: Selection, checkpoint: Path) -> Optional[np.ndarray]:
    """The fitted state: α from ``_state/alpha`` when its checksum holds, else fitted now (resuming an
    interrupted EigenPro fit from ``checkpoint``) and saved; the checkpoint is removed once α is."""
    if not isinstance(model, NTKModel):
        return model.fit()
    train = sel.train_index
    if "_state" in group and "alpha" in group["_state"]:
        arr = group["_state"]["alpha"]
        alpha = np.asarray(arr[...])
        if arr.attrs.get("checksum") == persist.checksum({"alpha": alpha, "train_index": train}):
            return alpha
    alpha = model.fit(checkpoint)
    st = group.require_group("_state")
    arr = persist.create_array(st, "alpha", alpha, dims=("train_pair", "gene"),
                               chunks=(max(1, min(alpha.shape[0], 2**24 // (8 * max(alpha.shape[1], 1)))),
                                       alpha.shape[1]))
    persist.create_array(st, "train_index", train, dims=("train_pair",), chunks=(max(train.size, 1),))
    arr.attrs["checksum"] = persist.checksum({"alpha": alpha, "train_index": train})  # written last
    shutil.rmtree(checkpoint, ignore_errors=True)
    return alpha


def _chunk(model: Any, sel: Selection, row_of: np.ndarray, state: Any, c: int, d0: int, d1: int) -> np.ndarray:
    """(d1 − d0, G) float32 block of cell c: measured profiles copied, the other pairs predicted."""
    rows = row_of[c, d0:d1]
    block = np.empty((d1 - d0, sel.shape[2]), np.float32)
    obs = rows >= 0
    block[obs] = sel.Y[rows[obs]]
    miss = np.nonzero(~obs)[0]
    if miss.size:
        block[miss] = model.predict(np.full(miss.size, c, np.int64), d0 + miss, state)
    return block


def _fill(group: Any, model: Any, sel: Selection, state: Any, progress: bool,
          callback: Optional[Callable[[int, int], None]]) -> int:
    """Write every chunk not yet marked in ``done``; returns how many were written."""
    C, D, G = sel.shape
    cd = int(group.attrs["plan"]["chunk_drugs"])
    row_of = np.full((C, D), -1, np.int64)
    row_of[sel.cell, sel.drug] = np.arange(sel.Y.shape[0])
    imputed, done = group["imputed"], group["done"]
    todo = np.argwhere(np.asarray(done[...]) == 0)
    total = int(np.prod(done.shape))
    bar = progress_bar(total, desc="impute", unit="chunk", initial=total - len(todo), progress=progress)
    for k, (c, j) in enumerate(todo.tolist()):
        d0, d1 = j * cd, min(D, (j + 1) * cd)
        block = _chunk(model, sel, row_of, state, c, d0, d1)
        imputed[c:c + 1, d0:d1, :] = block[None]  # (zarr 3.1 mis-broadcasts an int index with a 3-D value)
        done[c, j] = zlib.crc32(block.tobytes()) or 1  # marked only after the chunk's data are written
        bar.update(1)
        if callback is not None:
            callback(k + 1, len(todo))
    bar.close()
    return len(todo)


def _finish(group: Any, out: Path) -> None:
    """Confirm every chunk, record the checksum, mark complete, consolidate the metadata (for xarray)."""
    import warnings

    import zarr

    crcs = np.asarray(group["done"][...])
    if not crcs.all():
        raise RuntimeError(f"{int((crcs == 0).sum())} chunks missing after the run")
    group.attrs.update({"checksum": persist.checksum({"done": crcs}), "complete": True})
    with warnings.catch_warnings():  # "consolidated metadata is not part of the v3 spec (yet)"
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(out))


def _model(method: str, sel: Selection, config: Dict[str, Any], device: Any, dtype: Any, budget: int,
           progress: bool, client: Any = None) -> Any:
    if method == "ntk":
        return NTKModel(sel, config, device=device, dtype=dtype, memory_budget=budget, progress=progress,
                        client=client)
    return BaselineModel(method, sel, config["baseline_options"].get(method, {}))


def impute(store: str | Path | ObservationStore, out: str | Path, *, method: str = "ntk", prior: str = "sparse",
           depth: int = 1, ridge: float = 0.0, nugget: float = 1.5, w: float = 0.75, solver: str = "auto",
           cells: Optional[Sequence[str]] = None, drugs: Optional[Sequence[str]] = None,
           reference: Optional[str] = None, chunk_drugs: Optional[int] = None,
           solver_options: Optional[dict] = None, baseline_options: Optional[Dict[str, dict]] = None,
           device: Any = None, dtype: Any = None, memory_budget: Any = None, threads: Optional[int] = None,
           overwrite: bool = False, progress: bool = True, client: Any = None,
           callback: Optional[Callable[[int, int], None]] = None) -> Path:
    """Complete the (cell, drug) cube of an observation store into the predictions store ``out``.

    ``cells`` / ``drugs``: names (store ids) to restrict the cube — and the fit — to; ``reference``:
    the sparse prior's reference line (default: the selected line with most drugs). ``method`` is
    "ntk" (``prior`` sparse | onehot | mixed-dnpp | mixed-falrtc, ``depth``, ``ridge``, ``nugget`` τ,
    ``w``, ``solver`` and ``solver_options`` as for :class:`bigntk.NTKCompleter`) or a baseline
    ("mean", "dnpp", "falrtc"; ``baseline_options`` per name). ``chunk_drugs``: drugs per written chunk
    (default: sized to the memory budget). ``callback(k, n)`` is called after each written chunk.
    Resumes an interrupted store of the same configuration (module docstring); returns ``out``.
    ``client`` (a ``dask.distributed.Client``): the NTK's kernel products run sharded over its workers
    (:mod:`bigntk.distributed`); the predictions equal the in-process ones up to float64 rounding.
    """
    check_method(method, prior, solver, solver_options)
    comp = resolve_compute(device, dtype, memory_budget, threads)
    if threads is not None:
        from ...backend import set_threads

        set_threads(threads)
    out = Path(out)
    _check_out(out)
    with persist.exclusive(out):
        st = store if isinstance(store, ObservationStore) else open_store(store)
        sel = select(aggregate(st, progress=progress), cells, drugs, reference)
        dt = str(comp.dtype).replace("torch.", "")
        config = _config(sel, method, prior, depth, ridge, nugget, w, solver, solver_options or {},
                         baseline_options or {}, dt, cells, drugs, len(st.cell_names), len(st.drug_names))
        group = _open_existing(out, config, chunk_drugs, overwrite)
        if group is not None and group.attrs.get("complete"):
            return out
        budget = int(group.attrs["plan"]["memory_budget"]) if group is not None else comp.memory_budget
        model = _model(method, sel, config, comp.device, comp.dtype, budget, progress, client)
        # a store of another configuration (overwrite) is replaced only once the new one is complete
        replacing = group is None and out.exists()
        with persist.atomic_output(out) if replacing else contextlib.nullcontext(out) as target:
            if group is None:
                group = _create(target, sel, config, _plan(model, sel, budget, chunk_drugs),
                                str(Path(st.path).resolve()))
            _fill(group, model, sel, _state(group, model, sel, fit_checkpoint(out)), progress, callback)
            _finish(group, target)
    return out
