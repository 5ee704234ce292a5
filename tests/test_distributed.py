"""Scale-out: the sharded operator on dask.distributed (two worker processes on loopback)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from bigntk import NTKCompleter
from bigntk.distributed import DistributedOperator, cluster, distributed_operator, shard_bounds
from bigntk.operators import ntk_operator
from bigntk.solvers import solve

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def client():
    import os

    before = dict(os.environ)
    with cluster(workers=2, quiet=True) as c:
        yield c
    # dask's nannies set OMP/MKL_NUM_THREADS=1 etc. in this process; closing the cluster puts them back
    assert dict(os.environ) == before


def _problem(n=1200, p=8, l=3, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((p, n))
    return Z, np.maximum(rng.standard_normal((l, p)) @ Z, 0).T + 0.1 * rng.standard_normal((n, l))


def rel(a, b):
    return float(torch.linalg.norm(torch.as_tensor(a) - torch.as_tensor(b)) / torch.linalg.norm(torch.as_tensor(b)))


def test_shards_partition_the_points():
    b = shard_bounds(10, 3)
    assert b[0] == 0 and b[-1] == 10 and np.all(np.diff(b) > 0) and len(b) == 4
    with pytest.raises(ValueError):
        shard_bounds(10, 0)


def test_two_workers_give_the_in_process_solution(client):
    Z, Y = _problem()
    local = ntk_operator(Z, device="cpu", dtype="float64")
    op = distributed_operator(client, ntk_operator, Z, n=Z.shape[1], dtype="float64", n_shards=3)
    assert isinstance(op, DistributedOperator) and len(op.bounds) == 4
    np.testing.assert_allclose(op.diag().numpy(), local.diag().numpy())
    idx = np.array([3, 700, 15, 1199])
    np.testing.assert_allclose(op.block(idx, idx[::-1]).numpy(), local.block(idx, idx[::-1]).numpy(), rtol=1e-12)
    for solver, kw in (("eigenpro", dict(epochs=4, seed=0)), ("cg", dict(ridge=1e-2, tol=1e-10))):
        ref = solve(local, Y, solver, progress=False, **kw).alpha
        out = solve(op, Y, solver, progress=False, **kw).alpha
        assert rel(out, ref) <= 1e-6, solver
    # only deltas travel once the shards hold the coefficients: far less than n × l per product
    with pytest.warns(UserWarning, match="did not reach"):  # one iteration: the shards now cache a full slice
        solve(op, Y, "cg", ridge=1e-2, max_iter=1, progress=False)
    before = op.transfer_bytes
    r = solve(op, Y, "eigenpro", epochs=1, batch_size=100, subsample_size=200, seed=0, progress=False)
    steps = int(np.ceil(op.n / r.params["batch_size"]))
    assert (op.transfer_bytes - before) / steps < 0.55 * op.n * Y.shape[1] * 8  # batch + subsample rows only


def test_completer_with_client_matches_in_process(client):
    Z, Y = _problem(n=400, seed=2)
    Yt = Y.T.copy()
    mask = np.random.default_rng(3).random(Yt.shape) < 0.7
    mask[:, :50] = True
    kw = dict(ridge=1e-3, dtype="float64", progress=False)
    ref = NTKCompleter(Z, **kw).fit_transform(Yt, mask)
    out = NTKCompleter(Z, client=client, **kw).fit_transform(Yt, mask)
    assert np.abs(out - ref).max() <= 1e-8 * np.abs(ref).max()


def test_worker_killed_mid_solve_does_not_change_the_result():
    Z, Y = _problem(n=2000, seed=4)
    with cluster(workers=2, quiet=True) as c:
        op = distributed_operator(c, ntk_operator, Z, n=Z.shape[1], dtype="float64")
        kw = dict(epochs=2, batch_size=200, seed=0, progress=False)
        ref = solve(op, Y, "eigenpro", **kw).alpha
        pids = c.run(os.getpid)
        victim, killed = pids[sorted(pids)[1]], []

        def kill(step, _a):
            if step == 3:
                os.kill(victim, signal.SIGKILL)
                killed.append(step)

        out = solve(op, Y, "eigenpro", callback=kill, **kw).alpha
    assert killed and torch.equal(out, ref)


def test_externally_started_cluster_survives_sigkill_of_a_worker(tmp_path):
    """`dask scheduler` + two `dask worker` processes; one worker is killed during the solve."""
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file",
                               str(sched_file), "--port", "0", "--dashboard-address", ":0"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(200):
            if sched_file.exists() and sched_file.read_text().strip():
                break
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                           "--nthreads", "1", "--no-nanny", "--dashboard-address", ":0"],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        Z, Y = _problem(n=2000, seed=5)
        with cluster(scheduler=address, quiet=True) as c:
            c.wait_for_workers(2, timeout=60)
            op = distributed_operator(c, ntk_operator, Z, n=Z.shape[1], dtype="float64")
            kw = dict(epochs=2, batch_size=200, seed=0, progress=False)
            ref = solve(op, Y, "eigenpro", **kw).alpha
            victim = procs[2]

            def kill(step, _a):
                if step == 3:
                    victim.send_signal(signal.SIGKILL)

            out = solve(op, Y, "eigenpro", callback=kill, **kw).alpha
            assert victim.wait(timeout=10) == -signal.SIGKILL
            assert len(c.scheduler_info()["workers"]) == 1
        assert torch.equal(out, ref)
    finally:
        for p in procs[::-1]:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


def test_cli_workers_switch_gives_the_in_process_completion(tmp_path):
    from bigntk.cli import main

    Z, Y = _problem(n=300, seed=6)
    Yt = Y.T.copy()
    Yt[:, 250:] = np.nan
    np.save(tmp_path / "Y.npy", Yt)
    np.save(tmp_path / "Z.npy", Z)
    common = [str(tmp_path / "Y.npy"), "--prior", str(tmp_path / "Z.npy"), "--ridge", "1e-3", "--dtype", "float64",
              "--quiet"]
    assert main(["complete", *common, "--out", str(tmp_path / "a.npy")]) == 0
    assert main(["complete", *common, "--out", str(tmp_path / "b.npy"), "--workers", "2"]) == 0
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert np.abs(a - b).max() <= 1e-8 * np.abs(a).max()


def test_cmap_impute_workers_switch_gives_the_in_process_predictions(tmp_path, monkeypatch):
    import zarr

    import bigntk.distributed as dist
    from bigntk.apps.cmap.synth import synthesize
    from bigntk.cli import main

    sharded = []
    monkeypatch.setattr(dist, "distributed_operator",
                        lambda *a, **k: sharded.append(1) or distributed_operator(*a, **k))

    obs = tmp_path / "obs.zarr"
    synthesize(obs, profiles=400, cells=5, drugs=40, genes=12, rank=3, n_dense=2, sparse_max=20, seed=2,
               chunk_rows=200, progress=False)
    common = ["cmap", "impute", "--store", str(obs), "--dtype", "float64", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "a.zarr")]) == 0
    assert not sharded
    assert main([*common, "--out", str(tmp_path / "b.zarr"), "--workers", "2"]) == 0
    assert sharded  # the kernel products ran on the workers
    a, b = (zarr.open_group(str(tmp_path / f), mode="r")["imputed"][:] for f in ("a.zarr", "b.zarr"))
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


def test_cmap_cv_refits_on_the_workers_give_the_in_process_report(client, tmp_path, monkeypatch):
    import bigntk.distributed as dist
    from bigntk.apps.cmap.cv import CVSettings, cross_validate
    from bigntk.apps.cmap.synth import synthesize
    from bigntk.store import aggregate

    obs = synthesize(tmp_path / "obs.zarr", profiles=400, cells=5, drugs=40, genes=12, rank=3, n_dense=2,
                     sparse_max=20, seed=2, chunk_rows=200, progress=False)
    table = aggregate(obs, progress=False)
    s = CVSettings(folds=3, rounds=1, min_drugs=5, dtype="float64", solver="direct", refit="always")
    here = cross_validate(table, "ntk", s, progress=False)
    sharded = []
    monkeypatch.setattr(dist, "distributed_operator",
                        lambda *a, **k: sharded.append(1) or distributed_operator(*a, **k))
    there = cross_validate(table, "ntk", CVSettings(**{**vars(s), "client": client}), progress=False)
    assert sharded  # the refits ran sharded
    assert "client" not in there["settings"] and here["settings"] == there["settings"]
    for a, b in zip(here["per_fold"], there["per_fold"]):
        assert abs(a["mean_r2"] - b["mean_r2"]) <= 1e-8 and abs(a["pearson_r"] - b["pearson_r"]) <= 1e-8


def test_fast_product_operator_is_split_by_output_rows(client):
    from bigntk.kernels import cntk
    from bigntk.operators import PolyphaseCNTKOperator

    win = cntk.compact_kernel(cntk.dip(2), (32, 32), form="window", dtype="float64", device="cpu")
    mask = np.random.default_rng(7).random((32, 32)) < 0.8
    local = PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype="float64")
    op = distributed_operator(client, PolyphaseCNTKOperator.from_kernel, win, mask, n=local.n, dtype="float64")
    assert op.split == "rows" and op.fast_matmul
    rgb = np.random.default_rng(8).random((local.n, 3))
    ridge = 1e-3 * float(local.diag().mean())
    np.testing.assert_allclose(op.matmul(rgb).numpy(), local.matmul(rgb).numpy(), rtol=1e-12)
    ref = solve(local, rgb, "cg", ridge=ridge, tol=1e-10, progress=False)
    out = solve(op, rgb, "cg", ridge=ridge, tol=1e-10, progress=False)
    assert out.iterations == ref.iterations and rel(out.alpha, ref.alpha) <= 1e-6


def _holed_image(H=32, W=32, hole=6):
    """A smooth RGB image (H, W, 3) in [0.1, 0.9] and its mask (True = observed) with a central hole."""
    from bigntk.apps.inpaint import masks

    y, x = np.mgrid[0:H, 0:W] / max(H, W)
    img = 0.5 + 0.4 * np.stack([np.sin(2 * np.pi * (0.7 * x + 0.3 * y)), np.cos(2 * np.pi * (0.4 * x - 0.8 * y)),
                                np.sin(2 * np.pi * (x * y + 0.2))], axis=-1)
    return img.astype(np.float32), masks.center_hole((H, W), hole)


@pytest.mark.parametrize("upsample, solver", [("nearest", "cg"), ("nearest", "direct"), ("nearest", "eigenpro"),
                                              ("bilinear", "cg")])
def test_inpaint_with_client_matches_in_process(client, tmp_path, upsample, solver):
    # nearest: the window form (polyphase operator, split by output rows); bilinear: the full compact form
    # (CNTKOperator, split by columns; the workers open the store with CNTKOperator.from_store)
    from bigntk import inpaint
    from bigntk.apps.inpaint import inpaint_with_report

    img, obs = _holed_image()
    kw = dict(method="cntk", levels=3, upsample=upsample, solver=solver, dtype="float64", cache_dir=tmp_path,
              epochs=20 if solver == "eigenpro" else None, progress=False)
    ref, rep_here = inpaint_with_report(img, obs, **kw)
    out, rep = inpaint_with_report(img, obs, client=client, **kw)
    assert rep["info"]["operator"] == "DistributedOperator" and rep["info"]["workers"] == 2
    assert rep_here["info"]["workers"] is None and "client" not in rep["settings"]
    assert rep["info"].get("iterations") == rep_here["info"].get("iterations")
    # the solve is float64 on both sides; the fill is returned as float32, so the two can differ by the
    # float32 rounding of values that differ in their last float64 bits (≤ 6e-8 relative per pixel)
    assert rel(out, ref) <= 1e-6 and np.array_equal(out[obs], ref[obs])
    assert rel(inpaint(img, obs, client=client, **kw), ref) <= 1e-6  # the public wrapper passes it through


def test_inpaint_client_is_refused_where_nothing_is_sharded(client):
    from bigntk.apps.inpaint import inpaint

    img, obs = _holed_image(16, 16, 4)
    with pytest.raises(ValueError, match="method 'biharmonic' has none"):
        inpaint(img, obs, method="biharmonic", client=client)
    with pytest.raises(ValueError, match="dense kernel"):  # checked before the kernel is built
        inpaint(img, obs, method="cntk", levels=2, prior="meshgrid", client=client, progress=False)


def test_cli_inpaint_workers_switch_writes_the_in_process_image(tmp_path):
    from bigntk.apps.inpaint import io
    from bigntk.cli import main

    img, obs = _holed_image()
    np.save(tmp_path / "in.npy", io.apply_mask(img, obs))
    io.save_image(tmp_path / "mask.png", obs.astype(np.float32))
    common = ["inpaint", str(tmp_path / "in.npy"), "--mask", str(tmp_path / "mask.png"), "--levels", "3",
              "--dtype", "float64", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main([*common, "--out", str(tmp_path / "a.npy")]) == 0
    assert main([*common, "--out", str(tmp_path / "b.npy"), "--report", str(tmp_path / "b.json"),
                 "--workers", "2"]) == 0
    info = json.loads((tmp_path / "b.json").read_text())["info"]
    assert info["operator"] == "DistributedOperator" and info["workers"] == 2
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert rel(b, a) <= 1e-6  # float32 files of float64 fills (see test_inpaint_with_client_matches_in_process)
    # a method without kernel products is refused before a cluster starts (exit status 2, one error line)
    assert main([*common, "--out", str(tmp_path / "c.npy"), "--method", "biharmonic", "--workers", "2"]) == 2
