"""Solvers: EigenPro and CG against the direct solve, checkpoint/resume (SIGKILL), auto dispatch."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bigntk.operators import DenseOperator, NTKOperator, PolyphaseCNTKOperator
from bigntk.solvers import (CheckpointMismatchError, ConjugateGradient, EigenPro, KernelRegressor,
                            eigenpro_parameters, solve)

REPO = Path(__file__).resolve().parents[1]


def ntk_problem(n, p=10, l=3, seed=0, noise=0.0):
    """NTK Gram of a random prior and labels from a small random ReLU net of the prior (+ noise)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((p, n))
    Zn = Z / np.linalg.norm(Z, axis=0)
    W1, W2 = rng.standard_normal((32, p)), rng.standard_normal((l, 32))
    F = (W2 @ np.maximum(W1 @ Zn, 0)).T / 8
    Y = F + noise * F.std() * rng.standard_normal(F.shape)
    K = NTKOperator(Z, device="cpu", dtype="float64").to_dense().numpy()
    return K, Y


@pytest.fixture(scope="module")
def noisy():
    return ntk_problem(1000, noise=0.2)


def test_eigenpro_default_test_error_within_10pct_of_direct(noisy):
    K, Y = noisy
    tr, te = np.arange(800), np.arange(800, 1000)
    direct = KernelRegressor(DenseOperator(K, device="cpu", dtype="float64"), solver="direct")
    ep = KernelRegressor(DenseOperator(K, device="cpu", dtype="float32"), solver="eigenpro", seed=0, progress=False)
    err_d = ((direct.fit(Y[tr], train=tr).predict(te) - Y[te]) ** 2).mean()
    err_e = ((ep.fit(Y[tr], train=tr).predict(te) - Y[te]) ** 2).mean()
    assert err_e <= 1.10 * err_d, (err_e, err_d)
    hist = ep.history_
    assert len(hist) == 20 and hist[-1]["train_rel_mse"] < hist[0]["train_rel_mse"]


def test_eigenpro_converges_to_direct_solution():
    K, Y = ntk_problem(500, seed=1)
    op = DenseOperator(K, device="cpu", dtype="float64")
    tr, te = np.arange(400), np.arange(400, 500)
    d = KernelRegressor(op, solver="direct", ridge=0.1).fit(Y[tr], train=tr).predict(te)
    reg = KernelRegressor(op, solver="eigenpro", ridge=0.1, epochs=100, seed=0, progress=False)
    e = reg.fit(Y[tr], train=tr).predict(te)
    assert np.linalg.norm(e - d) / np.linalg.norm(d) <= 1e-3
    curve = [h["train_rel_mse"] for h in reg.history_]  # falls to the ridge's floor and stays there
    assert curve[-1] < 1e-2 * curve[0] and all(b <= a * (1 + 1e-9) for a, b in zip(curve, curve[1:]))


def test_eigenpro_parameters_follow_published_formulas():
    lam = np.array([1.0, 0.1, 0.01, 0.001, 1e-4])
    p = eigenpro_parameters(lam, beta=2.0, n=10_000, m_max=500)
    # q = #{λ_i > β / m_max = 0.004} = 3 (capped at s // 4 = 1 for s = 5)
    assert p["q"] == 1 and p["lambda_q1"] == 0.1
    assert p["batch_size"] == 20 and p["step_size"] == pytest.approx(20 / 2.0)  # m* = β/λ_{q+1} = 20
    p = eigenpro_parameters(np.geomspace(1, 1e-6, 40), beta=1.0, n=10_000, m_max=1000)
    assert p["critical_batch"] >= p["batch_size"] and p["step_size"] == pytest.approx(p["batch_size"])


def test_eigenpro_holdout_early_stopping_and_validation(noisy):
    K, Y = noisy
    op = DenseOperator(K[:300, :300], device="cpu", dtype="float32")
    res = EigenPro(epochs=6, val_fraction=0.2, patience=2, seed=3, progress=False).fit(op, Y[:300])
    val = res.val_index.numpy()
    assert len(val) == 60 and np.all(res.alpha.numpy()[val] == 0)
    vals = [h["val_mse"] for h in res.history]
    assert min(vals) <= vals[0] and len(res.history) <= 6
    with pytest.raises(ValueError, match="shape"):
        EigenPro(progress=False).fit(op, Y[:10])
    with pytest.raises(ValueError, match="val_fraction"):
        EigenPro(val_fraction=0.7)


def _psd_ill_conditioned(n, seed=0):
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((n, n)))[0]
    lam = 1e3 / np.arange(1, n + 1) ** 2 + 0.1  # kernel-like: fast decay, flat tail
    return (U * lam) @ U.T + 0.5 * np.ones((n, n))  # plus a dominant constant mode


def test_cg_matches_direct_and_preconditioning_helps():
    K = _psd_ill_conditioned(300)
    Y = np.random.default_rng(1).standard_normal((300, 2))
    op = DenseOperator(K, device="cpu", dtype="float64")
    ref = solve(op, Y, "direct").alpha.numpy()
    pcg = ConjugateGradient(400, tol=1e-10, rank=60, progress=False).fit(op, Y)
    plain = ConjugateGradient(400, tol=1e-10, preconditioner=None, deflate_constant=False, progress=False).fit(op, Y)
    assert np.linalg.norm(pcg.alpha.numpy() - ref) / np.linalg.norm(ref) < 1e-6
    assert pcg.iterations < plain.iterations
    assert pcg.history[-1]["rel_residual"] < 1e-10


def test_cg_float32_sketch_preconditioner_keeps_float64_accuracy():
    """A float32 copy of the operator may serve the Nyström sketch; the solution stays float64-exact."""
    op, _ = _cntk_window_operator()
    op32, _ = _cntk_window_operator(dtype="float32")
    Y = np.random.default_rng(3).random((op.n, 2))
    ridge = 1e-3 * float(op.diag().mean())
    ref = solve(op, Y, "direct", ridge=ridge).alpha.numpy()
    cg = ConjugateGradient(300, tol=1e-11, ridge=ridge, rank=40, progress=False)
    r32 = cg.fit(op, Y, sketch_operator=op32)
    r64 = cg.fit(op, Y)
    plain = ConjugateGradient(300, tol=1e-11, ridge=ridge, preconditioner=None, progress=False).fit(op, Y)
    assert np.linalg.norm(r32.alpha.numpy() - ref) / np.linalg.norm(ref) < 1e-6
    assert r32.iterations <= r64.iterations + 2 and r32.iterations < plain.iterations
    with pytest.raises(ValueError, match="sketch_operator"):
        cg.fit(op, Y, sketch_operator=DenseOperator(np.eye(5)))


def test_cg_block_jacobi_tiles_match_direct_and_beat_plain_cg():
    from bigntk.operators.cntk import tile_blocks

    op, _ = _cntk_window_operator(levels=2, shape=(24, 24))
    Y = np.random.default_rng(4).random((op.n, 2))
    ridge = 1e-3 * float(op.diag().mean())
    ref = solve(op, Y, "direct", ridge=ridge).alpha.numpy()
    blocks = tile_blocks(op.pixels, op.image_shape, 8)
    assert sorted(np.concatenate(blocks).tolist()) == list(range(op.n)) and len(blocks) == 9
    bj = ConjugateGradient(400, tol=1e-11, ridge=ridge, preconditioner="block_jacobi", blocks=blocks,
                           progress=False).fit(op, Y)
    plain = ConjugateGradient(400, tol=1e-11, ridge=ridge, preconditioner=None, progress=False).fit(op, Y)
    assert np.linalg.norm(bj.alpha.numpy() - ref) / np.linalg.norm(ref) < 1e-6
    assert bj.iterations < plain.iterations
    # default contiguous chunks, with a held-out split (blocks are mapped onto the training points)
    r = ConjugateGradient(50, ridge=ridge, preconditioner="block_jacobi", block_size=100, val_fraction=0.1,
                          progress=False).fit(op, Y)
    assert np.isfinite(r.alpha.numpy()).all() and r.history[0]["val_mse"] > 0
    with pytest.raises(ValueError, match="partition"):
        ConjugateGradient(5, ridge=ridge, preconditioner="block_jacobi", blocks=blocks[:-1],
                          progress=False).fit(op, Y)


def _cntk_window_operator(levels=2, shape=(16, 16), seed=0, dtype="float64"):
    cntk = pytest.importorskip("bigntk.kernels.cntk")
    win = cntk.compact_kernel(cntk.dip(levels), shape, form="window", dtype="float64", device="cpu")
    mask = np.random.default_rng(seed).random(shape) < 0.8
    return PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype=dtype), mask


def test_cg_and_eigenpro_on_cntk_match_direct():
    op, mask = _cntk_window_operator()
    rgb = np.random.default_rng(2).random((op.n, 3))  # three right-hand sides
    ridge = 1e-3 * float(op.diag().mean())
    ref = solve(op, rgb, "direct", ridge=ridge).alpha.numpy()
    cg = solve(op, rgb, "cg", ridge=ridge, max_iter=500, tol=1e-11, progress=False).alpha.numpy()
    assert np.linalg.norm(cg - ref) / np.linalg.norm(ref) < 1e-6
    # EigenPro is slow on this ill-conditioned kernel (CG is the tool here): a looser check of the fit
    K = op.to_dense().numpy()
    ridge = 1e-2 * float(op.diag().mean())
    ref = solve(op, rgb, "direct", ridge=ridge).alpha.numpy()
    ep = solve(op, rgb, "eigenpro", ridge=ridge, epochs=30, seed=0, progress=False).alpha.numpy()
    rel = np.linalg.norm(K @ ep - K @ ref) / np.linalg.norm(K @ ref)  # fitted values
    assert rel < 0.1


def _camera_inpainting(shape, levels=3):
    """Camera image, 80 % observed, window-form CNTK: (float32 operator, labels, predict(alpha), ridge)."""
    from skimage import data, transform

    cntk = pytest.importorskip("bigntk.kernels.cntk")
    img = transform.resize(data.camera() / 255.0, shape, anti_aliasing=True)
    win = cntk.compact_kernel(cntk.dip(levels), shape, form="window", dtype="float64", device="cpu")
    mask = np.random.default_rng(0).random(shape) < 0.8
    op = PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype="float32")
    full = PolyphaseCNTKOperator.from_kernel(win, None, device="cpu", dtype="float64")
    unobs = np.flatnonzero(~mask)

    def predict(alpha):
        return full.matmul(torch.as_tensor(alpha), rows=unobs, cols=op.pixels).numpy()

    return op, img.reshape(-1, 1)[op.pixels.numpy()], predict, 1e-3 * float(op.diag().mean())


def test_eigenpro_full_batch_on_fast_operator_reaches_direct():
    op, Y, predict, ridge = _camera_inpainting((32, 32))
    ref = predict(solve(op, Y, "direct", ridge=ridge).alpha)
    r = EigenPro(epochs=450, ridge=ridge, seed=0, progress=False).fit(op, Y)
    p = r.params
    assert p["full_batch"] and p["batch_size"] == op.n and len(r.history) == 450
    assert p["step_size"] == pytest.approx(1 / p["lambda_q1"])  # exact gradient: η = 1/λ_{q+1}
    assert np.linalg.norm(predict(r.alpha) - ref) / np.linalg.norm(ref) <= 1e-3


def test_eigenpro_full_batch_beats_minibatch_per_operator_product():
    # On a fast-product operator a mini-batch step costs one full product, like a full-batch step.
    # Same number of steps: the full batch (larger s and q, β-free step) is closer to the direct solve.
    op, Y, predict, ridge = _camera_inpainting((64, 64))
    ref = predict(solve(op, Y, "direct", ridge=ridge).alpha)
    mini = EigenPro(epochs=40, ridge=ridge, seed=0, progress=False, full_batch=False).fit(op, Y)
    steps = 40 * int(np.ceil(op.n / mini.params["batch_size"]))
    assert steps > 40 and not mini.params["full_batch"]
    full = EigenPro(epochs=steps, ridge=ridge, seed=0, progress=False).fit(op, Y)
    p = full.params
    assert p["full_batch"] and p["q"] > mini.params["q"]
    # the check ran on every point and found what the subsample missed; the step follows it
    assert p["lambda_check"] > p["lambda_q1_nystrom"] and p["lambda_q1"] >= p["lambda_check"]
    err = {k: np.linalg.norm(predict(r.alpha) - ref) / np.linalg.norm(ref) for k, r in (("mini", mini), ("full", full))}
    assert err["full"] < 0.8 * err["mini"], err


def test_eigenpro_forced_full_batch_on_tiled_operator_streams_and_converges():
    # full_batch=True on a tiled operator: the s × n correction tile exceeds the 4 MiB budget and is
    # streamed; the iteration is plain preconditioned gradient descent with η = 1/λ_{q+1}
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((10, 1500))
    Y = np.maximum(rng.standard_normal((3, 10)) @ (Z / np.linalg.norm(Z, axis=0)), 0).T
    op = NTKOperator(Z, device="cpu", dtype="float64", memory_budget=4 * 2**20)
    r = EigenPro(epochs=12, ridge=1e-3, seed=0, progress=False, full_batch=True).fit(op, Y)
    p = r.params
    assert p["full_batch"] and p["batch_size"] == 1500 and p["step_size"] == pytest.approx(1 / p["lambda_q1"])
    assert p["lambda_check"] is not None and 1000 * 1500 * 8 > op.memory_budget
    curve = [h["train_rel_mse"] for h in r.history]
    assert all(b < a for a, b in zip(curve, curve[1:])) and curve[-1] < 0.05, curve
    with pytest.raises(ValueError, match="full_batch"):
        EigenPro(full_batch="yes")


def test_solve_dispatch_and_regressor_errors():
    K = _psd_ill_conditioned(60) + np.eye(60)
    op = DenseOperator(K, device="cpu", dtype="float64")
    Y = np.arange(60.0)
    assert solve(op, Y, "auto").solver == "direct"  # direct below direct_max
    res = solve(op, Y, "auto", direct_max=10, epochs=2, progress=False)
    assert res.solver == "eigenpro" and len(res.history) == 2  # EigenPro above it
    assert solve(op, Y).alpha.shape == (60,)
    with pytest.raises(ValueError, match="unknown solver"):
        solve(op, Y, "magic")
    reg = KernelRegressor(op)
    with pytest.raises(RuntimeError, match="fit"):
        reg.predict()
    with pytest.raises(ValueError, match="training points"):
        reg.fit(Y[:5], train=np.arange(6))
    assert reg.fit(Y).predict().shape == (60,)


def _kill_resume_fit(ckpt, sleep=0.0):
    import time

    import numpy as np

    from bigntk.operators import DenseOperator
    from bigntk.solvers import EigenPro

    rng = np.random.default_rng(0)
    A = rng.standard_normal((400, 200))
    K = A @ A.T / 200 + 0.5
    Y = rng.standard_normal((400, 2))
    op = DenseOperator(K, device="cpu", dtype="float32")
    cb = (lambda step, a: time.sleep(sleep)) if sleep else None
    # Bitwise equality holds for one thread count: a GEMM's summation order depends on the threads, and
    # the killed run (a subprocess) and the resumed one (this process) must not differ in it.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return EigenPro(epochs=8, batch_size=50, subsample_size=200, seed=5, checkpoint=ckpt, checkpoint_every=3,
                        progress=False, callback=cb).fit(op, Y).alpha.numpy()
    finally:
        torch.set_num_threads(threads)


SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, sys.argv[4])
    from test_solvers import _kill_resume_fit
    np.save(sys.argv[2], _kill_resume_fit(sys.argv[1] or None, float(sys.argv[3])))
""")


def _run(script, *args, wait=True):
    cmd = [sys.executable, str(script), *map(str, args), str(Path(__file__).parent)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "BIGNTK_DEVICE": "cpu"}
    if wait:
        subprocess.run(cmd, check=True, env=env, timeout=120)
        return None
    return subprocess.Popen(cmd, env=env)


def test_kill_and_resume_is_bitwise_identical(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    ckpt = tmp_path / "state.zarr"
    # every run in a fresh process with the same environment: BLAS's threading mode (e.g. a leaked
    # MKL_NUM_THREADS=1) changes results bitwise, so the reference must not run in this process
    _run(script, "", tmp_path / "ref.npy", 0.0)
    ref = np.load(tmp_path / "ref.npy")
    proc = _run(script, ckpt, tmp_path / "killed.npy", 0.05, wait=False)
    deadline = time.time() + 90
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed.npy").exists(), "the run finished before it could be killed"
    import zarr

    assert zarr.open_group(str(ckpt), mode="r").attrs["status"] == "running"
    _run(script, ckpt, tmp_path / "resumed.npy", 0.0)  # resume in a fresh process
    assert np.array_equal(ref, np.load(tmp_path / "resumed.npy"))
    assert zarr.open_group(str(ckpt), mode="r").attrs["status"] == "done"


def test_checkpoint_from_other_configuration_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((120, 60))
    op = DenseOperator(A @ A.T / 60 + 0.5, device="cpu", dtype="float32")
    Y = rng.standard_normal((120, 2))
    ckpt = str(tmp_path / "c.zarr")
    first = EigenPro(epochs=2, seed=1, checkpoint=ckpt, progress=False).fit(op, Y)
    again = EigenPro(epochs=2, seed=1, checkpoint=ckpt, progress=False).fit(op, Y)  # finished: reloaded
    assert torch.equal(first.alpha, again.alpha)
    with pytest.raises(CheckpointMismatchError, match="different configuration"):
        EigenPro(epochs=2, seed=2, checkpoint=ckpt, progress=False).fit(op, Y)
    with pytest.raises(CheckpointMismatchError):
        EigenPro(epochs=2, seed=1, checkpoint=ckpt, progress=False).fit(op, Y + 1)


@pytest.mark.gpu
def test_solvers_cpu_cuda_parity():
    K, Y = ntk_problem(400, seed=4)
    out = []
    for dev in ("cpu", "cuda"):
        op = DenseOperator(K, device=dev, dtype="float64")
        out.append((solve(op, Y, "eigenpro", epochs=5, seed=0, progress=False).alpha.cpu().numpy(),
                    solve(op, Y, "cg", ridge=1e-3, tol=1e-10, progress=False).alpha.cpu().numpy()))
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_complete_iterative_path_matches_direct(tmp_path):
    from bigntk.completion import complete
    from bigntk.priors import ExplicitPrior

    rng = np.random.default_rng(7)
    Z = rng.standard_normal((5, 300))
    Y = rng.standard_normal((4, 300))
    mask = np.ones_like(Y, dtype=bool)
    mask[:, 250:] = False
    kw = dict(dtype="float64", progress=False)
    ref = complete(Y, mask, ExplicitPrior(Z), solver="direct", ridge=0.1, **kw)
    cg = complete(Y, mask, ExplicitPrior(Z), solver="cg", ridge=0.1, tol=1e-12, **kw)
    assert np.abs(cg - ref).max() <= 1e-6 * np.abs(ref).max()
    ep = complete(Y, mask, ExplicitPrior(Z), solver="eigenpro", ridge=0.1, epochs=3, seed=0,
                  checkpoint=str(tmp_path / "ck"), **kw)
    assert ep.shape == Y.shape and np.array_equal(ep[mask], Y[mask])
    assert len(list((tmp_path / "ck").glob("set-*"))) == 1  # one checkpoint group per observed column set


def test_top_eigh_matches_full_decomposition_and_auto_parameters():
    from bigntk.solvers.eigenpro import eigenpro_parameters, top_eigh

    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 40))
    A = torch.from_numpy(np.exp(-0.05 * ((X[:, None] - X[None]) ** 2).sum(-1)))  # Gaussian kernel, PSD
    lam_full, E_full = torch.linalg.eigh(A)
    lam_full, E_full = lam_full.flip(0), E_full.flip(1)
    lam, E = top_eigh(A, 52)
    assert lam.shape == (52,) and E.shape == (200, 52)
    np.testing.assert_allclose(lam.numpy(), lam_full[:52].numpy(), rtol=1e-9, atol=1e-12)
    top = 10  # well separated: the eigenvectors agree up to sign
    np.testing.assert_allclose(np.abs((E[:, :top] * E_full[:, :top]).sum(0).numpy()), 1.0, atol=1e-8)
    full = eigenpro_parameters(lam_full.numpy() / 200, beta=1.0, n=1000, m_max=500)
    part = eigenpro_parameters(lam.numpy() / 200, beta=1.0, n=1000, m_max=500, s=200)
    assert (full["q"], full["batch_size"]) == (part["q"], part["batch_size"])
    for key in ("step_size", "lambda_q1", "lambda_1", "critical_batch"):
        assert part[key] == pytest.approx(full[key], rel=1e-9)


def test_eigenpro_step_checked_on_fresh_points_keeps_it_stable():
    # 20-dim prior: the NTK spectrum has plateaus of multiplicity 1, 20, 209, 1540; with n = 5000 the
    # auto subsample (s = 1000) takes q = 230 and its λ_{q+1} underestimates the preconditioned top
    # several-fold. Set from λ_{q+1} alone the full-batch step diverged (train error 1 → 0.43 → 1.09 → …).
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((20, 5000))
    Y = np.maximum(rng.standard_normal((8, 20)) @ (Z / np.linalg.norm(Z, axis=0)), 0).T
    ep = EigenPro(epochs=4, seed=0, progress=False)
    r = ep.fit(NTKOperator(Z, device="cpu", dtype="float32"), Y)
    p = r.params
    assert p["lambda_check"] > 2 * p["lambda_q1_nystrom"] and p["lambda_q1"] >= p["lambda_check"]
    assert p["batch_size"] <= p["critical_batch"] + 1
    curve = [h["train_rel_mse"] for h in r.history]
    assert all(b < a for a, b in zip(curve, curve[1:])) and curve[-1] < 0.1, curve


def test_eigenpro_step_uses_the_preconditioned_beta_and_converges_in_a_few_epochs(noisy):
    """β is the largest diagonal entry of the preconditioned kernel (EigenPro 2's β(K_P)), far below
    max K_ii = κ(1) = 2; the step grows with it, and the epoch's last, smaller batch stays stable."""
    K, Y = noisy
    tr = np.arange(800)
    op = DenseOperator(K, device="cpu", dtype="float32").restrict(tr)
    r = EigenPro(epochs=6, seed=0, progress=False).fit(op, Y[tr])
    p = r.params
    assert p["beta_kernel"] == pytest.approx(2.0) and p["beta"] < 0.5 * p["beta_kernel"]
    assert 800 % p["batch_size"] != 0  # a partial last batch every epoch
    curve = [h["train_rel_mse"] for h in r.history]
    assert all(b < a for a, b in zip(curve, curve[1:])) and curve[-1] < 1e-3, curve


def test_eigenpro_correction_with_many_outputs_takes_the_other_association(monkeypatch):
    """With more outputs than preconditioner directions the correction is computed as (K_BS F)ᵀ g:
    the same iteration up to float32 rounding."""
    import bigntk.solvers.eigenpro as ep_mod

    K, Y = ntk_problem(600, l=40, seed=2)
    op = DenseOperator(K, device="cpu", dtype="float32")
    kw = dict(epochs=3, top_q=10, seed=0, progress=False)
    many = EigenPro(**kw).fit(op, Y)
    original = ep_mod._Loop.__init__

    def no_reassociation(self, *a, **k):
        original(self, *a, **k)
        assert self.Fw is not None  # 40 outputs > q = 10: the cheaper association was chosen
        self.Fw = None

    monkeypatch.setattr(ep_mod._Loop, "__init__", no_reassociation)
    plain = EigenPro(**kw).fit(op, Y)
    np.testing.assert_allclose(many.alpha, plain.alpha, rtol=1e-4, atol=1e-4 * np.abs(plain.alpha).max())


def test_eigenpro_divergence_is_an_error_not_a_result(noisy):
    K, Y = noisy
    op = DenseOperator(K, device="cpu", dtype="float32")
    with pytest.raises(FloatingPointError, match="diverged.*step_size"):
        EigenPro(epochs=5, step_size=1e7, seed=0, progress=False).fit(op, Y)


def test_eigenpro_setup_subsample_fits_the_memory_budget():
    """The auto Nyström subsample is capped so that its s × s float64 set-up stays within the budget."""
    from bigntk.operators import NTKOperator
    from bigntk.solvers.eigenpro import SETUP_BYTES_PER_ENTRY, _subsample_size

    assert _subsample_size(100_000, False, 2 * 2**30) == int((2 * 2**30 / SETUP_BYTES_PER_ENTRY) ** 0.5)
    assert _subsample_size(100_000, False, 64 * 2**30) == 12000  # the EigenPro 2 rule when memory allows
    assert _subsample_size(300, False, 10) == 300  # never below min(n, 500)
    rng = np.random.default_rng(0)
    Z, Y = rng.standard_normal((5, 12000)), rng.standard_normal((12000, 1))
    budget = SETUP_BYTES_PER_ENTRY * 700**2
    op = NTKOperator(Z, dtype="float32", device="cpu", memory_budget=budget)

    class Stop(Exception):
        pass

    def stop(step, alpha):
        raise Stop

    est = EigenPro(epochs=1, progress=False, seed=0, callback=stop)
    with pytest.raises(Stop):
        est.fit(op, Y)
    s = est.params_["subsample_size"]
    assert s == 700 and SETUP_BYTES_PER_ENTRY * s**2 <= budget


def test_eigenpro_warm_start_from_a_solution_stays_there():
    K, Y = ntk_problem(300, seed=4)
    op = DenseOperator(K, device="cpu", dtype="float64")
    exact = solve(op, Y, "direct").alpha
    res = solve(op, Y, "eigenpro", alpha0=exact, epochs=2, seed=0, progress=False)
    assert res.history[0]["train_rel_mse"] < 1e-10  # a cold start begins at 1
    torch.testing.assert_close(res.alpha, exact, rtol=1e-5, atol=1e-6 * float(exact.abs().max()))
    with pytest.raises(ValueError, match="shape"):
        EigenPro(epochs=1, progress=False).fit(op, Y, alpha0=exact[:, :1])
    with pytest.raises(ValueError, match="warm start"):
        solve(op, Y, "cg", alpha0=exact)
