"""Zarr v3 stores for compact CNTKs: content-addressed, built privately, verified on every read.

Layout (a zarr v3 group, ``format_version`` 2, arrays with named dimensions so that
``xarray.open_zarr`` opens a store as a Dataset):
  attrs:  format="bigntk.cntk", format_version, key, arch (layer specs), prior, dtype, form
          ("full" | "window"), period, complete (bool), checksum, and per form:
  full form:    shape [H, W], block_rows, method; array "C" (phase_y, phase_x, offset_y, offset_x) =
                (P, P, H, W), chunks (1, g, H, W); array "done" (block,) = (P // b,) uint32: the CRC32 of
                each block written (0 = not yet; a resumed build computes only those); checksum =
                sha256 over the block CRC32s.
  window form:  size independent (one store per architecture, prior and dtype serves every image size
                H, W ≥ 2P divisible by P); c_far, min_shape [2P, 2P]; array "C_window"
                (phase_y, phase_x, window_y, window_x) = (P, P, 2P−1, 2P−1), chunks (1, P, 2P−1, 2P−1);
                checksum = :func:`bigntk.persist.checksum` of the window.

Writing (:func:`ensure_store`): under the writer's lock of the store path (:func:`bigntk.persist.exclusive`;
a second process waits for the first and then finds the store built), a missing or damaged store is built
in the private directory ``.<name>.partial`` beside it and renamed into place when complete. A killed build
leaves only that directory; the next build resumes it. A store is never visible half written.

Reading (:func:`open_kernel`): every chunk must be on disk (:func:`bigntk.persist.require_chunks`: a
missing chunk is damage, never fill values); the window form's checksum is confirmed on every open (the
window is small), the full form's with ``verify=True``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from ... import backend, persist
from ...backend import resolve_device, resolve_dtype
from ...priors.images import stationary_values
from .compact import (CompactKernel, WindowKernel, check_compact, stream_block_rows, stream_blocks, window_arrays,
                      window_condition)
from .layers import Serial

__all__ = ["kernel_key", "store_path", "ensure_store", "check_store", "open_kernel", "DamagedStoreError",
           "FORMAT", "FORMAT_VERSION", "DIMS"]

FORMAT = "bigntk.cntk"
FORMAT_VERSION = 2
#: dimension names of the stored arrays
DIMS = {"C": ("phase_y", "phase_x", "offset_y", "offset_x"), "done": ("block",),
        "C_window": ("phase_y", "phase_x", "window_y", "window_x")}


class DamagedStoreError(RuntimeError):
    """A kernel store is incomplete or its data do not match its checksum."""


def _prior_spec(prior: Any) -> dict:
    vals = stationary_values(prior)
    return {"name": prior if isinstance(prior, str) else "stationary_pair", "values": list(vals)}


def kernel_key(arch: Serial, shape, prior: Any = "stationary", *, form: str = "full", dtype=None) -> str:
    """Content address (sha256 hex) of a kernel: architecture + prior + form + dtype (+ shape, full form).

    The window form does not depend on the image size, so its key leaves the shape out.
    """
    payload = {
        "format": FORMAT, "version": FORMAT_VERSION, "arch": arch.spec(), "prior": _prior_spec(prior),
        "shape": None if form == "window" else list(map(int, shape)), "form": form,
        "dtype": str(resolve_dtype(dtype)).replace("torch.", ""),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def store_path(store: Any, key: str) -> Path:
    """``store`` itself when it ends in ``.zarr``, else the content-addressed ``<store>/cntk-<key>.zarr``."""
    path = Path(store)
    if path.suffix == ".zarr":
        return path
    return path / f"cntk-{key[:16]}.zarr"


def _combine(crcs) -> str:
    h = hashlib.sha256()
    for c in crcs:
        h.update(int(c).to_bytes(4, "little"))
    return "sha256:" + h.hexdigest()


def _crc(host: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(host)).cast("B")) or 1  # 0 marks "not done"


# ------------------------------------------------------------------------------------------ reading
def check_store(path: Any, *, verify: bool = False) -> tuple[Any, dict, Optional[np.ndarray]]:
    """Open and check a store: (group, attrs, window array for the window form else None).

    Raises FileNotFoundError, ValueError (not a CNTK store, newer format), :class:`DamagedStoreError`
    (incomplete, checksum mismatch) or :class:`bigntk.persist.MissingChunkError`.
    """
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no kernel store at {path}")
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    if attrs.get("format") != FORMAT:
        raise ValueError(f"{path} is not a bigntk CNTK store (format={attrs.get('format')!r})")
    if attrs.get("format_version", 0) != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {attrs.get('format_version')}, this bigntk reads "
                         f"{FORMAT_VERSION}: rebuild it (bigntk kernel build ... --overwrite)")
    if not attrs.get("complete"):
        raise DamagedStoreError(f"store {path} is incomplete (interrupted build): rerun the build to resume it")
    for name in DIMS:
        if name in group:
            persist.require_chunks(group[name], str(path))
    if attrs["form"] == "window":
        host = np.asarray(group["C_window"][...])
        if persist.checksum({"C_window": host}) != attrs.get("checksum"):
            raise DamagedStoreError(f"checksum mismatch in {path}: the stored window is damaged; rebuild it")
        return group, attrs, host
    if verify:
        C, b = group["C"], int(attrs["block_rows"])
        if _combine(_crc(C[y0:y0 + b]) for y0 in range(0, C.shape[0], b)) != attrs.get("checksum"):
            raise DamagedStoreError(f"checksum mismatch in {path}: the stored kernel is damaged; rebuild it")
    return group, attrs, None


def open_kernel(path: Any, *, shape=None, device=None, verify: bool = False,
                memory_budget: int | str | None = None):
    """Reopen a stored kernel, checked (:func:`check_store`); the full form lazily (rows read phase by phase).

    shape : for window stores, the image size to serve (default: the smallest, 2P × 2P).
    verify : also recompute the full form's checksum (reads the whole store).
    memory_budget : bytes of stored chunks a full-form kernel may cache (a quarter of it; backend rule).
    """
    group, attrs, window = check_store(path, verify=verify)
    arch = Serial.from_spec(attrs["arch"])
    prior = attrs["prior"]["name"] if attrs["prior"]["name"] != "stationary_pair" else tuple(attrs["prior"]["values"])
    dev = resolve_device(device)
    if attrs["form"] == "window":
        return WindowKernel(torch.from_numpy(window).to(dev), attrs["c_far"], shape or attrs["min_shape"], arch,
                            prior, meta=attrs)
    if shape is not None and tuple(map(int, shape)) != tuple(attrs["shape"]):
        raise ValueError(f"{path} holds the full-form kernel of {attrs['shape']}, not of {list(shape)}")
    return CompactKernel(group["C"], attrs["shape"], arch, prior, device=dev, dtype=attrs["dtype"], meta=attrs,
                         memory_budget=memory_budget)


# ------------------------------------------------------------------------------------------ writing
@contextlib.contextmanager
def _writer_lock(path: Path, progress: bool) -> Iterator[None]:
    """The store's writer's lock; when another process holds it, say so and wait for it."""
    if progress and persist.is_locked(path):  # (the message only; the lock below decides)
        print(f"waiting for another process to finish writing {path}", file=sys.stderr)
    with persist.exclusive(path, wait=True):
        yield


def _reusable(path: Path, key: str, overwrite: bool, verify: bool, owned: bool) -> bool:
    """True when ``path`` holds this kernel intact; False when it is to be (re)built; raises when it
    holds something else that must not be replaced. ``owned``: the path is a content-addressed entry of
    a cache directory, so whatever is there under that name is a (damaged) store of ours."""
    kind = persist.store_kind(path)
    if kind != FORMAT:
        what = f"a {kind!r} store" if kind else ("a file" if path.is_file() else "a directory that is not a store")
        if owned and not path.is_file():
            warnings.warn(f"kernel store {path} is damaged (unreadable metadata); rebuilding it", RuntimeWarning,
                          stacklevel=3)
            return False
        raise FileExistsError(f"{path} is {what}, not a CNTK kernel store: refusing to overwrite it")
    import zarr

    found = zarr.open_group(str(path), mode="r").attrs.get("key")
    if found != key:
        if not overwrite:
            raise ValueError(f"store {path} holds a different kernel (key {str(found or '?')[:16]}…, wanted "
                             f"{key[:16]}…); choose another path or pass overwrite=True (CLI: --overwrite)")
        return False
    try:
        check_store(path, verify=verify)
        return True
    except (persist.StoreError, DamagedStoreError) as err:
        warnings.warn(f"kernel store {path} is damaged ({err}); rebuilding it", RuntimeWarning, stacklevel=3)
        return False


def ensure_store(arch: Serial, shape, prior: Any, store: Any, *, window: bool, device=None, dtype=None,
                 block_rows: Optional[int] = None, workers: int = 1, progress: bool = False,
                 overwrite: bool = False, method: str = "auto", memory_budget: int | str | None = None,
                 verify: bool = False) -> tuple[Path, bool]:
    """Make sure the store of this kernel exists and is intact; returns ``(path, built)``.

    An intact store is reused (``built`` False); a missing, incomplete or damaged one is built (or resumed)
    in the private partial directory and renamed into place (module docstring). ``verify``: check the full
    form's checksum too before reusing it (``bigntk kernel build`` does).
    """
    shape, _ = check_compact(arch, shape, prior)
    dt = resolve_dtype(dtype)
    key = kernel_key(arch, shape, prior, form="window" if window else "full", dtype=dt)
    path = store_path(store, key)
    with _writer_lock(path, progress):
        persist.restore_interrupted_swap(path)
        if path.exists() and _reusable(path, key, overwrite, verify, owned=path != Path(store)):
            return path, False
        partial = persist.sidecar(path, ".partial")
        group = _open_partial(partial, key, arch, prior, dt, window)
        if window:
            _write_window(group, arch, prior, device, dt)
        else:
            _write_full(group, arch, shape, prior, device=device, dtype=dt, block_rows=block_rows, workers=workers,
                        progress=progress, method=method, memory_budget=memory_budget, path=partial)
        group.attrs["complete"] = True
        persist.swap_into_place(partial, path)
    return path, True


def _open_partial(partial: Path, key: str, arch: Serial, prior: Any, dt: torch.dtype, window: bool):
    """The partial group of this kernel: resumed when it holds the same key, else started afresh."""
    import zarr

    if partial.exists():
        try:
            group = zarr.open_group(str(partial), mode="r+")
            if group.attrs.get("key") == key:
                return group
        except Exception:  # noqa: BLE001 - an unreadable partial build is discarded, never trusted
            pass
        shutil.rmtree(partial)
    group = zarr.open_group(str(partial), mode="w", zarr_format=3)
    group.attrs.update({
        "format": FORMAT, "format_version": FORMAT_VERSION, "key": key, "arch": arch.spec(),
        "prior": _prior_spec(prior), "dtype": str(dt).replace("torch.", ""), "form": "window" if window else "full",
        "period": arch.output_period()[0], "complete": False,
    })
    return group


def _write_window(group: Any, arch: Serial, prior: Any, device, dt: torch.dtype) -> None:
    C_window, c_far, P = window_arrays(arch, prior, device=device, dtype=dt)
    host = C_window.cpu().numpy()
    persist.create_array(group, "C_window", host, dims=DIMS["C_window"], chunks=(1,) + host.shape[1:])
    group.attrs.update({"c_far": c_far, "min_shape": [2 * P, 2 * P],
                        "checksum": persist.checksum({"C_window": host})})


def _full_arrays(group: Any, arch: Serial, shape, prior: Any, dt: torch.dtype, b: int, method: str) -> None:
    """Create the full form's arrays in a fresh partial group (a resumed build reuses them)."""
    P, (H, W) = arch.output_period()[0], shape
    itemsize = torch.finfo(dt).bits // 8
    gx = max(1, min(P, (8 << 20) // (H * W * itemsize)))  # ~8 MiB chunks: few files, cheap row reads
    while P % gx:
        gx -= 1
    np_dtype = str(dt).replace("torch.", "")
    persist.create_array(group, "C", shape=(P, P, H, W), dtype=np_dtype, chunks=(1, gx, H, W), dims=DIMS["C"])
    persist.create_array(group, "done", shape=(P // b,), dtype="uint32", chunks=(1,), fill_value=0,
                         dims=DIMS["done"])
    if method == "auto":
        method = "window" if window_condition(arch, shape, prior) else "stream"
    # a resumed build finishes with the block size and method it started with
    group.attrs.update({"shape": list(shape), "block_rows": b, "method": method})


def _write_full(group: Any, arch: Serial, shape, prior: Any, *, device, dtype: torch.dtype,
                block_rows: Optional[int], workers: int, progress: bool, method: str,
                memory_budget: int | str | None, path: Path) -> None:
    if "C" not in group:
        budget = backend.memory_budget(resolve_device(device), memory_budget)
        _full_arrays(group, arch, shape, prior, dtype, block_rows or stream_block_rows(arch, shape, dtype, budget),
                     method)
    b, method = int(group.attrs["block_rows"]), group.attrs["method"]
    C_arr, done = group["C"], group["done"]
    done_now = np.asarray(done[:])
    todo = int((done_now == 0).sum()) * b * int(np.prod(C_arr.shape[1:])) * C_arr.dtype.itemsize
    persist.check_disk_space(path, todo, f"the full-form kernel of a {shape[0]}x{shape[1]} image",
                             "free space or choose another --store (cache_dir); the window form "
                             "(--form window) is size independent where it holds")

    def sink(y0, block):
        host = block.cpu().numpy()
        C_arr[y0:y0 + host.shape[0]] = host
        done[y0 // b] = crc = _crc(host)  # marked only after the block's data are written
        return crc

    stream_blocks(arch, shape, prior, device=device, dtype=dtype, block_rows=b,
                  skip=lambda y0: bool(done_now[y0 // b]), sink=sink, workers=workers, progress=progress,
                  method=method)
    crcs = np.asarray(done[:])
    if not crcs.all():
        raise RuntimeError(f"{int((crcs == 0).sum())} blocks missing after the build")
    group.attrs["checksum"] = _combine(crcs)
