"""Zarr v3 persistence shared by every store the library writes (one home for the rules below).

Every store is a zarr v3 group with the attributes ``format`` (its kind, e.g. "bigntk-observations"),
``format_version`` and ``complete``. The rules:

* **Named dimensions.** Arrays carry zarr v3 ``dimension_names`` (:func:`create_array`), so
  ``xarray.open_zarr`` opens every store as a Dataset; plain ``zarr.open_group`` reads it too.
* **Every chunk is written.** Arrays are created with ``write_empty_chunks=True``, so a chunk equal to
  the fill value is still a file, and a missing chunk is damage: :func:`require_chunks` turns it into
  an error on the normal read path (zarr would otherwise hand out the fill value as data).
* **Checksums.** :func:`checksum` (sha256 over arrays' bytes) is recorded in the attributes of small
  stores and checkpoints and confirmed on read.
* **Atomic replacement.** :func:`replace_atomically` writes a new store beside the old one and swaps
  it in by renames, so a failed or killed write leaves the old store (or nothing) in place, never a
  half store; ``overwrite`` replaces only a store of the same kind, never an arbitrary directory.
* **One writer at a time.** :func:`exclusive` holds an advisory lock (``fcntl.flock``) on a file
  beside the store; a second writer of the same path fails at once with :class:`StoreBusyError`
  (or, with ``wait=True``, waits for the first to finish).
* **Checked before computing.** :func:`check_output_path` refuses an output path that cannot be
  written (a missing or read-only folder, a wrong extension, a path inside another store) and
  :func:`check_disk_space` a write the disk cannot hold, before any work; :func:`load_npy` reads a
  ``.npy`` input or says in one line why the file is not one.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["StoreError", "StoreBusyError", "MissingChunkError", "store_kind", "exclusive", "is_locked",
           "replace_atomically", "atomic_output", "create_array", "require_chunks", "checksum", "sidecar",
           "swap_into_place", "remove", "enclosing_store", "check_output_path", "check_disk_space",
           "free_disk_bytes", "load_npy"]


class StoreError(ValueError):
    """A store on disk is damaged, foreign or in use."""


class StoreBusyError(StoreError):
    """Another process is writing the same store."""


class MissingChunkError(StoreError):
    """A chunk of an array is missing from disk (the store is damaged)."""


def sidecar(path: str | os.PathLike, suffix: str) -> Path:
    """A hidden path beside ``path`` (``dir/.name<suffix>``): partial writes, old copies, locks."""
    p = Path(path)
    return p.with_name(f".{p.name}{suffix}")


def store_kind(path: str | os.PathLike) -> str | None:
    """The ``format`` attribute of the zarr v3 group at ``path``; None when it is not one (read cheaply)."""
    meta = Path(path) / "zarr.json"
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if doc.get("node_type") != "group":
        return None
    kind = doc.get("attributes", {}).get("format")
    return str(kind) if kind is not None else None


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, wait: bool = False) -> Iterator[None]:
    """Hold the writer's lock of ``path``.

    ``wait=False``: fail at once with :class:`StoreBusyError` when another process holds it;
    ``wait=True``: block until it is released (a cache entry being built by another process).
    """
    import fcntl

    lock = sidecar(path, ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise StoreBusyError(f"{path} is being written by another process; wait for it or "
                                     "choose another path") from None
            raise
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_locked(path: str | os.PathLike) -> bool:
    """True when another process holds the writer's lock of ``path`` (checked without waiting)."""
    try:
        with exclusive(path):
            return False
    except StoreBusyError:
        return True


def check_replaceable(path: str | os.PathLike, kind: str, overwrite: bool) -> None:
    """Refuse to write over ``path`` unless ``overwrite`` and it is a store of the same ``kind``."""
    p = Path(path)
    if not p.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{p} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    found = store_kind(p)
    if found != kind:
        what = f"a {found!r} store" if found else ("a file" if p.is_file() else "a directory that is not a store")
        raise FileExistsError(f"{p} is {what}, not a {kind!r} store: refusing to overwrite it; "
                              "choose another output path")


@contextlib.contextmanager
def replace_atomically(path: str | os.PathLike, kind: str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh directory to write the new store into; on success it replaces ``path``.

    Checks first (:func:`check_replaceable`), holds the writer's lock throughout, and swaps by two
    renames (old → ``.name.old``, new → name). On an exception the new directory is removed and the old
    store is untouched; after a crash between the renames the next call restores ``.name.old``.
    """
    p = Path(path)
    with exclusive(p):
        restore_interrupted_swap(p)
        check_replaceable(p, kind, overwrite)
        with atomic_output(p) as tmp:
            yield tmp


def remove(path: Path) -> None:
    """Remove a file, a link or a directory tree, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(path: str | os.PathLike) -> None:
    """Remove temporary siblings of ``path`` left by writers that were killed (their process is gone)."""
    p = Path(path)
    for tmp in p.parent.glob(f".{p.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            remove(tmp)


def swap_into_place(new: Path, path: Path) -> None:
    """Rename ``new`` (a file or a directory) to ``path``; the previous ``path`` is moved aside first
    (a directory cannot be replaced by one rename), removed after, and put back if the rename fails."""
    old = sidecar(path, ".old")
    remove(old)
    had_old = path.exists() or path.is_symlink()
    if had_old:
        os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        if had_old:
            os.replace(old, path)
        raise
    remove(old)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (file or directory); on success it replaces ``path``,
    on failure it is removed and ``path`` is as it was: a failed write never leaves a partial output.
    Partial copies of writers that were killed are removed first."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(p)
    tmp = sidecar(p, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        swap_into_place(tmp, p)
    finally:
        remove(tmp)


def restore_interrupted_swap(path: str | os.PathLike) -> None:
    """A crash between the two renames of :func:`swap_into_place` left only ``.name.old``: put it back."""
    p, old = Path(path), sidecar(path, ".old")
    if not p.exists() and old.exists():
        os.replace(old, p)


def create_array(group: Any, name: str, data: np.ndarray | None = None, *, dims: Sequence[str],
                 shape: Sequence[int] | None = None, dtype: Any = None, chunks: Sequence[int] | None = None,
                 fill_value: Any = None, attrs: dict | None = None) -> Any:
    """A zarr v3 array with named dimensions whose every chunk is written (module docstring)."""
    shape = tuple(np.shape(data)) if data is not None else tuple(shape or ())
    if len(dims) != len(shape):
        raise ValueError(f"array {name!r} has {len(shape)} dimensions but {len(dims)} names {tuple(dims)}")
    kw: dict[str, Any] = {"dimension_names": tuple(dims), "config": {"write_empty_chunks": True},
                          "overwrite": True}
    if chunks is not None:
        kw["chunks"] = tuple(max(int(c), 1) for c in chunks)
    if fill_value is not None:
        kw["fill_value"] = fill_value
    if data is not None:
        data = np.asarray(data)
        if data.dtype.kind == "U" or data.dtype.kind == "O":
            arr = group.create_array(name, shape=shape, dtype=str, **kw)
            if data.size:
                arr[...] = data.astype(str)
        else:
            arr = group.create_array(name, shape=shape, dtype=data.dtype, **kw)
            if data.size:
                arr[...] = data
    else:
        arr = group.create_array(name, shape=shape, dtype=dtype, **kw)
    if attrs:
        arr.attrs.update(attrs)
    return arr


def require_chunks(array: Any, where: str = "") -> None:
    """Raise :class:`MissingChunkError` when any chunk of ``array`` is missing from disk."""
    if array.size == 0:
        return
    have, want = int(array.nchunks_initialized), int(array.nchunks)
    if have < want:
        raise MissingChunkError(f"{where or array.path}: {want - have} of {want} chunks of array "
                                f"{array.path!r} are missing (the store is damaged); rebuild or re-ingest it")


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """``sha256:<hex>`` over the names, dtypes, shapes and bytes of ``arrays`` (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        if a.dtype.kind in "UOT":
            a = np.asarray([str(x) for x in a.reshape(-1)], dtype="U").reshape(a.shape)
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


# -- checks before computing ---------------------------------------------------------------------------
def enclosing_store(path: str | os.PathLike) -> Path | None:
    """The nearest folder above ``path`` that is a bigntk store (None when there is none)."""
    for parent in Path(os.path.abspath(path)).parents:
        if store_kind(parent) is not None:
            return parent
    return None


def _existing_ancestor(path: Path) -> Path:
    p = Path(os.path.abspath(path)).parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_path(path: str | os.PathLike, suffixes: Sequence[str] = (), what: str = "output",
                      kind: str | None = None) -> None:
    """Refuse, before any computing, an output path that cannot be written: an extension not in
    ``suffixes`` (when given), an existing directory that is not a store of ``kind`` (the store the
    caller writes; None: a file), a path inside another store, a folder that is a file, read-only or
    missing permissions. Creates nothing (the probe file is removed at once)."""
    p = Path(path)
    if suffixes and p.suffix.lower() not in suffixes:
        raise ValueError(f"{what} {p}: unsupported extension {p.suffix or '(none)'!r}; use one of "
                         f"{', '.join(suffixes)}")
    if p.is_dir() and (kind is None or store_kind(p) != kind):
        found = store_kind(p)
        is_what = f"a {found!r} store" if found else "a directory"
        raise ValueError(f"{what} {p} is {is_what}{f', not a {kind!r} store' if kind else ''}: refusing to "
                         "replace it; choose another path")
    store = enclosing_store(p)
    if store is not None:
        raise ValueError(f"{what} {p} is inside the store {store}; choose a path outside it")
    folder = _existing_ancestor(p)
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory (choose another output path)", str(folder))
    probe = folder / f".bigntk-write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch()
    except OSError as err:
        raise type(err)(err.errno, err.strerror, str(folder)) from None
    probe.unlink()


def free_disk_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the file system that ``path`` (or its nearest existing folder) lives on."""
    p = Path(path)
    return int(shutil.disk_usage(p if p.exists() else _existing_ancestor(p)).free)


def check_disk_space(path: str | os.PathLike, need: int, what: str, alternative: str) -> None:
    """Refuse, before writing, ``need`` bytes at ``path`` that its file system cannot hold."""
    free = free_disk_bytes(path)
    if need > free:
        raise OSError(f"{what} needs about {_size(need)} on disk at {path} but {_size(free)} are free; "
                      f"{alternative}")


def _size(n: int) -> str:
    return f"{n / 1e9:,.2f} GB" if n >= 1e9 else f"{n / 1e6:,.2f} MB"


def load_npy(path: str | os.PathLike, what: str = "input") -> np.ndarray:
    """Read a ``.npy`` array file; one clear error when ``path`` is missing, empty or not a ``.npy`` file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(errno.ENOENT, f"No such {what} file", str(p))
    with open(p, "rb") as fh:
        head = fh.read(6)
    if head != b"\x93NUMPY":
        kind = "empty" if not head else ("a .npz archive" if head.startswith(b"PK") else "not a .npy array file")
        raise ValueError(f"{what} {p} is {kind}; write it with numpy.save(path, array)")
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise ValueError(f"{what} {p} holds Python objects, not numbers; save a numeric array") from None
        raise ValueError(f"{what} {p} is a damaged .npy file ({err}); write it again with numpy.save") from None
    except (EOFError, OSError) as err:
        raise ValueError(f"{what} {p} is a damaged .npy file ({err}); write it again with numpy.save") from None
