"""The kernel cache of inpainting: one window store per architecture, list/clean, the size cap, and
concurrent / killed writers (separate processes)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bigntk.apps.inpaint import cache, inpaint_with_report, masks
from bigntk.cli import main

REPO = Path(__file__).resolve().parents[1]


def image(H: int, W: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W] / max(H, W)
    return (0.5 + 0.4 * np.stack([np.sin(5 * x + y), np.cos(3 * y - x), np.sin(4 * x * y)], -1)).astype(np.float32)


def test_window_kernel_is_stored_once_for_every_padded_size(tmp_path):
    stores = set()
    for H, W in [(32, 32), (40, 56), (64, 48)]:
        img = image(H, W)
        _, rep = inpaint_with_report(img, masks.center_hole(img.shape, 5), levels=3, cache_dir=tmp_path,
                                     progress=False)
        assert rep["info"]["kernel_form"] == "window"
        stores.add(rep["info"]["kernel_store"])
    assert len(stores) == 1 and len(list(tmp_path.glob("cntk-*.zarr"))) == 1


def test_cache_list_clean_and_size_cap(tmp_path, monkeypatch, capsys):
    img = image(32, 32)
    obs = masks.center_hole(img.shape, 5)
    _, r1 = inpaint_with_report(img, obs, levels=2, cache_dir=tmp_path, progress=False)
    _, r2 = inpaint_with_report(img, obs, levels=3, cache_dir=tmp_path, progress=False)
    assert main(["cache", "list", "--cache-dir", str(tmp_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {e["path"] for e in listed} == {r1["info"]["kernel_store"], r2["info"]["kernel_store"]}
    assert all(e["form"] == "window" and e["complete"] and e["bytes"] > 0 for e in listed)
    assert main(["cache", "list", "--cache-dir", str(tmp_path)]) == 0 and "any size" in capsys.readouterr().out
    # the cap: a new entry evicts the least recently used one, never itself
    os.utime(r1["info"]["kernel_store"], (time.time() - 100, time.time() - 100))
    monkeypatch.setenv("BIGNTK_CACHE_MAX", "1")
    _, r3 = inpaint_with_report(img, obs, levels=3, prior="identity", cache_dir=tmp_path, progress=False)
    left = {str(p) for p in tmp_path.glob("*.zarr")}
    assert r3["info"]["kernel_store"] in left and r1["info"]["kernel_store"] not in left
    monkeypatch.delenv("BIGNTK_CACHE_MAX")
    # leftovers of an interrupted build are removed by clean; --all removes the rest
    partial = Path(r3["info"]["kernel_store"]).with_name(".cntk-0123456789abcdef.zarr.partial")
    partial.mkdir()
    (partial / "x").write_bytes(b"0" * 10)
    assert main(["cache", "clean", "--cache-dir", str(tmp_path)]) == 0 and not partial.exists()
    assert len(list(tmp_path.glob("*.zarr"))) == len(left)
    assert main(["cache", "clean", "--cache-dir", str(tmp_path), "--all"]) == 0
    assert not list(tmp_path.glob("*.zarr")) and cache.entries(tmp_path) == []


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "BIGNTK_THREADS": "1", "BIGNTK_DEVICE": "cpu"}


def test_two_concurrent_inpaint_processes_on_a_fresh_cache(tmp_path):
    from bigntk.apps.inpaint import io

    img = image(40, 40)
    obs = masks.center_hole(img.shape, 6) & masks.random_missing(img.shape, 0.3, seed=1)
    io.save_image(tmp_path / "in.png", img)
    io.save_image(tmp_path / "m.png", obs.astype(np.float32))
    cmd = lambda k: [sys.executable, "-m", "bigntk", "inpaint", str(tmp_path / "in.png"), "--mask",
                     str(tmp_path / "m.png"), "--levels", "4", "--cache-dir", str(tmp_path / "cache"),
                     "--out", str(tmp_path / f"out{k}.png"), "--report", str(tmp_path / f"r{k}.json"), "--quiet"]
    procs = [subprocess.Popen(cmd(k), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k in (0, 1)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1].decode()[-2000:] for r in results]
    assert (tmp_path / "out0.png").read_bytes() == (tmp_path / "out1.png").read_bytes()
    reports = [json.loads((tmp_path / f"r{k}.json").read_text())["info"] for k in (0, 1)]
    assert sorted(r["kernel_cached"] for r in reports) == [False, True]  # one built, the other reused it
    assert len({r["kernel_store"] for r in reports}) == 1
    assert [e["name"] for e in cache.entries(tmp_path / "cache") if e["leftover"]] == []


def test_sigkill_during_a_cache_write_then_a_rerun_equals_an_undisturbed_build(tmp_path):
    import zarr

    from bigntk.kernels.cntk import compact_kernel, dip, kernel_key

    # full form, bilinear, 32 blocks of one phase row each (about 2 s of writing on 2 CPU cores)
    cmd = [sys.executable, "-m", "bigntk", "kernel", "build", "--levels", "5", "--shape", "128x128", "--upsample",
           "bilinear", "--store", str(tmp_path / "cache"), "--memory-budget", "1MB", "--quiet"]
    arch = dip(5, upsample="bilinear")
    store = tmp_path / "cache" / f"cntk-{kernel_key(arch, (128, 128), form='full')[:16]}.zarr"
    partial_done = store.with_name(f".{store.name}.partial") / "done" / "c"
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if partial_done.is_dir() and len(list(partial_done.iterdir())) >= 4:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    written = len(list(partial_done.iterdir()))
    assert not store.exists() and 4 <= written < 32  # killed mid-write: no store in place, a partial one
    rerun = subprocess.run(cmd, env=_env(), capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    assert not partial_done.parent.parent.exists()
    ref = compact_kernel(arch, (128, 128), store=tmp_path / "undisturbed.zarr", form="full", memory_budget="1MB")
    got, want = zarr.open_group(str(store)), zarr.open_group(str(tmp_path / "undisturbed.zarr"))
    assert np.array_equal(got["C"][...], want["C"][...]) and np.array_equal(got["done"][...], want["done"][...])
    assert got.attrs["checksum"] == want.attrs["checksum"] == ref.meta["checksum"]


#: ``bigntk`` that stalls in the third full-form kernel block (its data written, not yet marked done), so the
#: writer is killed mid-write
_STALLING_WRITER = """
import sys, time
from bigntk.kernels.cntk import store
crc, blocks = store._crc, []
def stall(block):
    blocks.append(1)
    if len(blocks) == 3:
        time.sleep(120)
    return crc(block)
store._crc = stall
from bigntk.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_of_the_writer_of_two_concurrent_inpaint_runs_then_the_other_finishes_bitwise(tmp_path):
    """Two `bigntk inpaint` runs on a fresh cache; the one writing the (full-form) kernel is killed mid-write.
    The other, waiting for the lock, resumes the partial build and ends bitwise equal to an undisturbed run."""
    from bigntk.apps.inpaint import io
    from bigntk.kernels.cntk.store import check_store

    img = image(24, 24)[..., 0]
    io.save_image(tmp_path / "in.png", img)
    io.save_image(tmp_path / "m.png", masks.center_hole(img.shape, 4).astype(np.float32))
    args = lambda k, cache_dir: ["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "m.png"), "--levels",
                                 "4", "--upsample", "bilinear", "--solver", "direct", "--memory-budget", "1MB",
                                 "--cache-dir", str(tmp_path / cache_dir), "--out", str(tmp_path / f"out{k}.png"),
                                 "--report", str(tmp_path / f"r{k}.json")]
    ref = subprocess.Popen([sys.executable, "-m", "bigntk", *args(2, "fresh"), "--quiet"], env=_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # undisturbed, own cache
    writer = subprocess.Popen([sys.executable, "-c", _STALLING_WRITER, *args(0, "cache"), "--quiet"], env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = lambda: [p for p in (tmp_path / "cache").glob(".cntk-*.partial/done/c/*") if p.is_file()]
    deadline = time.time() + 120
    while time.time() < deadline and writer.poll() is None and len(done()) < 2:
        time.sleep(0.01)
    other = subprocess.Popen([sys.executable, "-m", "bigntk", *args(1, "cache")], env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "waiting for another process" in other.stderr.readline()  # (without --quiet it says so)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert writer.returncode == -signal.SIGKILL and len(done()) == 2
    _, err = other.communicate(timeout=300)
    assert other.returncode == 0, err[-2000:]
    assert ref.wait(timeout=300) == 0, ref.stderr.read()[-2000:]
    assert (tmp_path / "out1.png").read_bytes() == (tmp_path / "out2.png").read_bytes()
    info = json.loads((tmp_path / "r1.json").read_text())["info"]
    assert info["kernel_cached"] is False and info["kernel_form"] == "compact"
    check_store(Path(info["kernel_store"]), verify=True)
    assert not done() and not (tmp_path / "out0.png").exists()
