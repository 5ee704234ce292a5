"""Zarr v3 stores for compact CNTKs: content-addressed, resumable, checksummed, lazily reopened.

Layout of a store (a zarr v3 group):
  attrs:  format="bigntk.cntk", format_version, key, arch (layer specs), prior, shape, dtype, form
          ("full" | "window"), period, complete (bool), checksum ("sha256:<hex>" over per-block CRC32s
          for the full form, over the window bytes for the window form), c_far (window form).
  full form:    array "C"  (P, P, H, W), chunks (1, 1, H, W) (one phase = one kernel row pattern);
                array "done" (P // b,) uint8: blocks already written (resume after interruption).
  window form:  array "C_window" (P, P, 2P−1, 2P−1), chunks (1, P, 2P−1, 2P−1).
"""
from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ...backend import resolve_device, resolve_dtype
from .compact import (
    CompactKernel,
    WindowKernel,
    _block_rows,
    _check_compact,
    stream_blocks,
    window_arrays,
)
from .layers import Conv, Serial

__all__ = ["kernel_key", "build_store", "open_kernel", "FORMAT", "FORMAT_VERSION"]

FORMAT = "bigntk.cntk"
FORMAT_VERSION = 1


def _prior_spec(prior: Any) -> Any:
    from ...priors.images import stationary_values

    vals = stationary_values(prior)
    return {"name": prior if isinstance(prior, str) else "stationary_pair", "values": list(vals)}


def kernel_key(arch: Serial, shape, prior: Any = "stationary", *, form: str = "full", dtype=None) -> str:
    """Content address (sha256 hex) of a kernel: architecture + prior + shape + form + dtype."""
    payload = {
        "format": FORMAT, "version": FORMAT_VERSION, "arch": arch.spec(), "prior": _prior_spec(prior),
        "shape": list(map(int, shape)), "form": form, "dtype": str(resolve_dtype(dtype)).replace("torch.", ""),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _resolve_path(store: Any, key: str) -> Path:
    path = Path(store)
    if path.suffix == ".zarr":
        return path
    return path / f"cntk-{key[:16]}.zarr"


def _combine(crcs) -> str:
    h = hashlib.sha256()
    for c in crcs:
        h.update(int(c).to_bytes(4, "little"))
    return "sha256:" + h.hexdigest()


def build_store(arch: Serial, shape, prior: Any, store: Any, *, window: bool, device=None, dtype=None,
                block_rows: Optional[int] = None, workers: int = 1, progress: bool = False,
                overwrite: bool = False, method: str = "auto"):
    """Build (or reopen) the kernel in a zarr v3 store; see :func:`compact_kernel`."""
    import zarr

    shape, _ = _check_compact(arch, shape, prior)
    dt = resolve_dtype(dtype)
    form = "window" if window else "full"
    key = kernel_key(arch, shape, prior, form=form, dtype=dt)
    path = _resolve_path(store, key)
    np_dtype = "float32" if dt == torch.float32 else "float64"
    if path.exists() and not overwrite:
        group = zarr.open_group(str(path), mode="r+")
        if group.attrs.get("key") != key:
            raise ValueError(f"store {path} holds a different kernel (key {group.attrs.get('key', '?')[:16]}…, "
                             f"wanted {key[:16]}…); choose another path or pass overwrite=True")
        if group.attrs.get("complete"):
            return open_kernel(path, device=device)
    else:
        group = zarr.open_group(str(path), mode="w")
        group.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION, "key": key, "arch": arch.spec(),
            "prior": _prior_spec(prior), "shape": list(shape), "dtype": np_dtype, "form": form,
            "period": arch.output_period()[0], "complete": False,
        })
    P = arch.output_period()[0]
    if window:
        C_window, c_far, _ = window_arrays(arch, prior, device=device, dtype=dt)
        arr = group.create_array("C_window", shape=tuple(C_window.shape), chunks=(1,) + tuple(C_window.shape[1:]),
                                 dtype=np_dtype, overwrite=True)
        host = C_window.cpu().numpy()
        arr[...] = host
        group.attrs.update({"c_far": c_far, "checksum": "sha256:" + hashlib.sha256(host.tobytes()).hexdigest(),
                            "complete": True})
        return open_kernel(path, device=device)
    H, W = shape
    R = sum(l.radius for l in arch.layers[arch.tail_start():] if isinstance(l, Conv)) if arch.n_up else 0
    b = block_rows or (_block_rows(P, H, W, R, 4 if np_dtype == "float32" else 8, 1 << 30) if arch.n_up else P)
    if "C" not in group:
        itemsize = 4 if np_dtype == "float32" else 8
        gx = max(1, min(P, (8 << 20) // (H * W * itemsize)))  # ~8 MiB chunks: few files, cheap row reads
        while P % gx:
            gx -= 1
        group.create_array("C", shape=(P, P, H, W), chunks=(1, gx, H, W), dtype=np_dtype)
        group.create_array("done", shape=(P // b,), chunks=(1,), dtype="uint32", fill_value=0)
        group.attrs["block_rows"] = b
        if method == "auto":
            from .compact import window_condition

            method = "window" if window_condition(arch, shape, prior) else "stream"
        group.attrs["method"] = method  # a resumed build finishes with the method it started with
    b = int(group.attrs["block_rows"])
    method = group.attrs.get("method", method)
    C_arr, done = group["C"], group["done"]
    done_now = np.asarray(done[:])

    def sink(y0, block):
        host = block.cpu().numpy()
        C_arr[y0:y0 + host.shape[0]] = host
        crc = zlib.crc32(memoryview(np.ascontiguousarray(host)).cast("B")) or 1  # 0 marks "not done"
        done[y0 // b] = crc
        return crc

    stream_blocks(arch, shape, prior, device=device, dtype=dt, block_rows=b,
                  skip=lambda y0: bool(done_now[y0 // b]), sink=sink, workers=workers, progress=progress,
                  method=method)
    crcs = np.asarray(done[:])
    if not crcs.all():
        raise RuntimeError(f"store {path}: {int((crcs == 0).sum())} blocks missing after the build")
    group.attrs.update({"checksum": _combine(crcs), "complete": True})
    return open_kernel(path, device=device)


def open_kernel(path: Any, *, shape=None, device=None, verify: bool = False):
    """Reopen a stored kernel lazily (full form: rows are read phase by phase from zarr).

    shape : for window stores, the image size to serve (default: the size it was built for).
    verify : recompute the checksum (reads the whole store).
    """
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no kernel store at {path}")
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    if attrs.get("format") != FORMAT:
        raise ValueError(f"{path} is not a bigntk CNTK store (format={attrs.get('format')!r})")
    if attrs.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {attrs['format_version']} > supported {FORMAT_VERSION}")
    if not attrs.get("complete"):
        raise RuntimeError(f"store {path} is incomplete (interrupted build): rerun the build to resume it")
    arch = Serial.from_spec(attrs["arch"])
    prior = attrs["prior"]["name"] if attrs["prior"]["name"] != "stationary_pair" else tuple(attrs["prior"]["values"])
    dev = resolve_device(device)
    if attrs["form"] == "window":
        host = np.asarray(group["C_window"][...])
        if verify and "sha256:" + hashlib.sha256(host.tobytes()).hexdigest() != attrs["checksum"]:
            raise RuntimeError(f"checksum mismatch in {path}")
        C_window = torch.from_numpy(host).to(dev)
        return WindowKernel(C_window, attrs["c_far"], shape or attrs["shape"], arch, prior, meta=attrs)
    C = group["C"]
    if verify:
        b = int(attrs["block_rows"])
        crcs = [zlib.crc32(memoryview(np.ascontiguousarray(C[y0:y0 + b])).cast("B")) or 1
                for y0 in range(0, C.shape[0], b)]
        if _combine(crcs) != attrs["checksum"]:
            raise RuntimeError(f"checksum mismatch in {path}")
    return CompactKernel(C, attrs["shape"], arch, prior, device=dev, dtype=attrs["dtype"], meta=attrs)
