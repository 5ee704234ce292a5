"""Persistence rules (bigntk.persist) and the solver checkpoints that use them."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from bigntk import persist
from bigntk.solvers.checkpoint import load_checkpoint, save_checkpoint


def _store(path: Path, kind: str = "demo") -> None:
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    g.attrs.update({"format": kind, "format_version": 1, "complete": True})
    persist.create_array(g, "x", np.arange(12.0).reshape(4, 3), dims=("row", "col"), chunks=(2, 3))


def test_replace_refuses_foreign_directory_and_keeps_old_store_on_failure(tmp_path):
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "input.gct").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a store"):
        with persist.replace_atomically(foreign, "demo", overwrite=True):
            pass
    assert (foreign / "input.gct").read_text() == "keep me"
    target = tmp_path / "s.zarr"
    _store(target)
    with pytest.raises(FileExistsError, match="overwrite"):
        with persist.replace_atomically(target, "demo"):
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with persist.replace_atomically(target, "demo", overwrite=True) as tmp:
            _store(tmp)
            raise RuntimeError("boom")
    assert persist.store_kind(target) == "demo" and not list(tmp_path.glob(".s.zarr.tmp*"))
    with persist.replace_atomically(target, "demo", overwrite=True) as tmp:
        _store(tmp, "demo")
        zarr.open_group(str(tmp)).attrs["generation"] = 2
    assert zarr.open_group(str(target)).attrs["generation"] == 2


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    target = tmp_path / "s.zarr"
    with persist.exclusive(target):
        with pytest.raises(persist.StoreBusyError, match="another process"):
            with persist.replace_atomically(target, "demo"):
                pass


def test_missing_chunk_is_an_error_not_fill_values(tmp_path):
    _store(tmp_path / "s.zarr")
    arr = zarr.open_group(str(tmp_path / "s.zarr"))["x"]
    persist.require_chunks(arr)
    (tmp_path / "s.zarr" / "x" / "c" / "1" / "0").unlink()
    with pytest.raises(persist.MissingChunkError, match="1 of 2 chunks"):
        persist.require_chunks(zarr.open_group(str(tmp_path / "s.zarr"))["x"])


def test_interrupted_swap_is_restored(tmp_path):
    target = tmp_path / "s.zarr"
    _store(persist.sidecar(target, ".old"))  # a crash between the two renames
    persist.restore_interrupted_swap(target)
    assert persist.store_kind(target) == "demo"


def test_damaged_checkpoint_is_refused_not_read_as_zeros(tmp_path):
    ck = tmp_path / "ck"
    save_checkpoint(ck, {"alpha": np.ones((3000, 2))}, {"config_hash": "h"})
    arrays, _ = load_checkpoint(ck, "h")
    assert np.all(arrays["alpha"] == 1)
    chunk = next(p for p in (ck / "alpha" / "c").rglob("*") if p.is_file())
    chunk.unlink()
    with pytest.raises(persist.StoreError, match="missing|damaged"):
        load_checkpoint(ck, "h")
    shutil.rmtree(ck)
    save_checkpoint(ck, {"alpha": np.ones((10, 2))}, {"config_hash": "h"})
    g = zarr.open_group(str(ck), mode="r+")
    g["alpha"][0, 0] = 5.0  # altered data, chunk present
    with pytest.raises(persist.StoreError, match="checksum"):
        load_checkpoint(ck, "h")


_KILLED_WRITER = """
import sys, time, numpy as np, zarr
from bigntk import persist
target, kind = sys.argv[1], "demo"
with persist.replace_atomically(target, kind, overwrite=True) as tmp:
    g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    g.attrs.update({"format": kind, "format_version": 1, "complete": True, "generation": 2})
    persist.create_array(g, "x", np.full((4, 3), 2.0), dims=("row", "col"))
    print("written", flush=True)
    time.sleep(60)  # killed here, before the swap
"""


def test_sigkill_during_overwrite_keeps_the_old_store(tmp_path):
    import signal
    import subprocess
    import sys

    target = tmp_path / "s.zarr"
    _store(target)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    g = zarr.open_group(str(target), mode="r")
    assert "generation" not in g.attrs and np.array_equal(g["x"][...], np.arange(12.0).reshape(4, 3))
    assert list(tmp_path.glob(".s.zarr.tmp-*"))  # the killed writer's partial copy
    with persist.replace_atomically(target, "demo", overwrite=True) as tmp:  # the lock died with the writer
        _store(tmp)
    assert persist.store_kind(target) == "demo" and not list(tmp_path.glob(".s.zarr.tmp-*"))


def test_a_waiting_writer_gets_the_lock_when_the_first_releases_it(tmp_path):
    import threading
    import time

    target, order = tmp_path / "s.zarr", []

    def second():
        with persist.exclusive(target, wait=True):
            order.append("second")

    with persist.exclusive(target):
        assert persist.is_locked(target)
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.2)
        order.append("first done")
    t.join(5)
    assert order == ["first done", "second"] and not persist.is_locked(target)


#: ``bigntk`` that stalls after the first appended chunk of an observation store (SIGKILLed there)
_STALLING_SYNTH = """
import sys, time
from bigntk.store import observations
append = observations.ObservationWriter.append
def stall(self, *a, **k):
    out = append(self, *a, **k)
    print("appended", flush=True)
    time.sleep(120)
observations.ObservationWriter.append = stall
from bigntk.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_during_cmap_synth_overwrite_keeps_the_old_store_and_a_rerun_equals_an_undisturbed_run(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from bigntk.cli import main
    from bigntk.store import open_store

    repo = Path(__file__).resolve().parents[1]
    synth = ["cmap", "synth", "--profiles", "600", "--cells", "4", "--drugs", "40", "--genes", "8", "--dense", "1",
             "--chunk-rows", "100", "--quiet"]
    target = tmp_path / "s.zarr"
    assert main([*synth, "--store", str(target)]) == 0
    old = open_store(target).read()
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "BIGNTK_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _STALLING_SYNTH, *synth, "--seed", "1", "--store", str(target),
                             "--overwrite"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "appended", proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    st = open_store(target)  # the old store opens, complete and unchanged
    assert st.complete and np.array_equal(st.read(), old, equal_nan=True)
    assert list(tmp_path.glob(".s.zarr.tmp-*"))  # the killed writer's partial copy, beside it
    assert main([*synth, "--seed", "1", "--store", str(target), "--overwrite"]) == 0
    assert main([*synth, "--seed", "1", "--store", str(tmp_path / "undisturbed.zarr")]) == 0
    got, want = open_store(target), open_store(tmp_path / "undisturbed.zarr")
    assert np.array_equal(got.read(), want.read(), equal_nan=True) and not np.array_equal(got.read(), old)
    for name in ("cell", "drug", "dose", "time", "replicate"):
        assert np.array_equal(got.labels(name), want.labels(name), equal_nan=True)
    assert not list(tmp_path.glob(".s.zarr.tmp-*"))  # cleaned up by the rerun
