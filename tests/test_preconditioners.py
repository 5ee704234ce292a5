"""Circulant surrogate and masked preconditioner (bigntk.preconditioners) against dense references."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bigntk.operators import CNTKOperator, PolyphaseCNTKOperator
from bigntk.preconditioners import BlockCirculantKernel, MaskedCirculantPreconditioner
from bigntk.solvers import ConjugateGradient, solve

cntk = pytest.importorskip("bigntk.kernels.cntk")
SHAPE = (16, 16)  # dip(2): period P = 4, window form needs H, W >= 2P


@pytest.fixture(scope="module")
def kernels():
    arch = cntk.dip(2)
    win = cntk.compact_kernel(arch, SHAPE, form="window", dtype="float64", device="cpu")
    full = cntk.compact_kernel(arch, SHAPE, form="full", dtype="float64", device="cpu")
    mask = np.random.default_rng(0).random(SHAPE) < 0.8
    return win, full, mask, full.to_dense().numpy()


def dense_surrogate(kernel: BlockCirculantKernel) -> np.ndarray:
    H, W = kernel.image_shape
    eye = torch.eye(H * W, dtype=torch.float64).reshape(H, W, H * W)
    return kernel.matmul(eye).reshape(H * W, H * W).numpy()


def test_surrogate_is_exact_at_the_kernel_period_for_both_kernel_forms(kernels):
    win, full, _, K = kernels
    for op in (PolyphaseCNTKOperator.from_kernel(win, None, device="cpu", dtype="float64"),
               CNTKOperator(full, None, device="cpu", dtype="float64")):
        grid = op.grid()
        assert grid.period == 4 and grid.image_shape == SHAPE
        np.testing.assert_allclose(dense_surrogate(BlockCirculantKernel(grid.offsets(4))), K, atol=1e-10)
    with pytest.raises(ValueError, match="divide"):
        op.grid().offsets(3)


def test_shift_average_is_psd_and_solve_inverts(kernels):
    win, _, _, K = kernels
    grid = PolyphaseCNTKOperator.from_kernel(win, None, device="cpu", dtype="float64").grid()
    for Q in (1, 2):
        KQ = dense_surrogate(BlockCirculantKernel(grid.offsets(Q)))
        np.testing.assert_allclose(KQ, KQ.T, atol=1e-12)
        assert np.linalg.eigvalsh(KQ).min() > -1e-9 * np.abs(K).max()
        # a shift by Q pixels is a symmetry of K_Q but (Q < P) not of K
        s = np.roll(np.arange(256).reshape(SHAPE), Q, axis=0).reshape(-1)
        np.testing.assert_allclose(KQ[np.ix_(s, s)], KQ, atol=1e-12)
        assert np.abs(K[np.ix_(s, s)] - K).max() > 1e-6
    mu = 1e-3
    kern = BlockCirculantKernel(grid.offsets(2), mu)
    X = torch.randn(*SHAPE, 2, dtype=torch.float64)
    np.testing.assert_allclose(kern.solve(kern.matmul(X)).numpy(), X.numpy(), atol=1e-8)
    with pytest.raises(ValueError, match="multiple"):
        BlockCirculantKernel(torch.zeros(3, 3, 16, 16))


def test_masked_preconditioner_is_the_inverse_of_the_masked_surrogate(kernels):
    win, _, mask, _ = kernels
    op = PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype="float64")
    mu = 1e-3 * float(op.diag().mean())
    prec = MaskedCirculantPreconditioner(op.grid(), mu, period=2, tol=1e-12, max_inner=500, dtype=torch.float64)
    KQ = dense_surrogate(BlockCirculantKernel(op.grid().offsets(2)))
    S = op.pixels.numpy()
    A = KQ[np.ix_(S, S)] + mu * np.eye(len(S))
    R = np.random.default_rng(1).standard_normal((len(S), 2))
    np.testing.assert_allclose(prec(torch.as_tensor(R)).numpy(), np.linalg.solve(A, R), rtol=1e-6, atol=1e-8)
    assert prec.inner_iterations and 0 < prec.inner_iterations[-1] < 500
    with pytest.raises(ValueError, match="mu > 0"):
        MaskedCirculantPreconditioner(op.grid(), 0.0)


def test_cg_with_circulant_preconditioner_matches_direct_in_few_iterations(kernels):
    win, _, mask, _ = kernels
    op = PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype="float64")
    Y = np.random.default_rng(2).random((op.n, 3))
    ridge = 1e-3 * float(op.diag().mean())
    ref = solve(op, Y, "direct", ridge=ridge).alpha.numpy()
    # Q = P: the preconditioner is the exact inverse of the system (up to its inner tolerance 1e-6)
    exact = ConjugateGradient(10, tol=1e-9, ridge=ridge, preconditioner="circulant", period=4,
                              progress=False).fit(op, Y)
    assert exact.iterations <= 3
    auto = ConjugateGradient(200, tol=1e-10, ridge=ridge, progress=False)  # auto -> circulant, Q = 4 = P here
    res_auto = auto.fit(op, Y)
    assert isinstance(auto.preconditioner_, MaskedCirculantPreconditioner)
    coarse = ConjugateGradient(200, tol=1e-10, ridge=ridge, preconditioner="circulant", period=1,
                               progress=False).fit(op, Y)
    plain = ConjugateGradient(400, tol=1e-10, ridge=ridge, preconditioner=None, progress=False).fit(op, Y)
    for r in (exact, res_auto, coarse):
        assert np.linalg.norm(r.alpha.numpy() - ref) / np.linalg.norm(ref) < 1e-6
    assert coarse.iterations < plain.iterations
    # held-out points are unobserved for the preconditioner: still converges on the training points
    r = ConjugateGradient(100, tol=1e-8, ridge=ridge, val_fraction=0.1, progress=False).fit(op, Y)
    assert np.isfinite(r.alpha.numpy()).all() and r.history[-1]["rel_residual"] < 1e-6
    with pytest.raises(ValueError, match="image grid"):
        from bigntk.operators import DenseOperator

        ConjugateGradient(5, ridge=ridge, preconditioner="circulant", progress=False).fit(
            DenseOperator(op.to_dense()), Y)


def test_float32_preconditioner_is_close_to_float64(kernels):
    win, _, mask, _ = kernels
    op = PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype="float64")
    mu = 1e-3 * float(op.diag().mean())
    R = torch.as_tensor(np.random.default_rng(3).standard_normal((op.n, 1)))
    p64 = MaskedCirculantPreconditioner(op.grid(), mu, tol=1e-8, max_inner=500, dtype=torch.float64)(R)
    p32 = MaskedCirculantPreconditioner(op.grid(), mu, tol=1e-5, max_inner=500)(R)
    assert p32.dtype == torch.float64
    assert float((p32 - p64).norm() / p64.norm()) < 1e-2


def test_phase_layout_products_and_masked_inverse_on_a_non_square_grid_with_a_hole():
    # H ≠ W catches a swapped axis in the phase index; a hole gives the inner CG a hard, smooth U
    arch = cntk.dip(2)
    win = cntk.compact_kernel(arch, (16, 24), form="window", dtype="float64", device="cpu")
    mask = np.random.default_rng(4).random((16, 24)) < 0.85
    mask[4:10, 9:17] = False
    op = PolyphaseCNTKOperator.from_kernel(win, mask, device="cpu", dtype="float64")
    k = BlockCirculantKernel(op.grid().offsets(2), 0.1)
    X = torch.as_tensor(np.random.default_rng(5).standard_normal((16, 24, 2)))
    ph = k.phase_index(torch.arange(16 * 24))
    Z = torch.zeros(2, 16 * 24, dtype=torch.float64)
    Z[:, ph] = X.reshape(-1, 2).T
    for grid_op, phase_op in ((k.matmul, k.matmul_phases), (k.solve, k.solve_phases)):
        np.testing.assert_allclose(phase_op(Z)[:, ph].T.numpy(), grid_op(X).reshape(-1, 2).numpy(), atol=1e-10)
    mu = 1e-3 * float(op.diag().mean())
    prec = MaskedCirculantPreconditioner(op.grid(), mu, period=2, tol=1e-12, max_inner=500, dtype=torch.float64)
    S = op.pixels.numpy()
    A = dense_surrogate(BlockCirculantKernel(op.grid().offsets(2)))[np.ix_(S, S)] + mu * np.eye(len(S))
    R = np.random.default_rng(6).standard_normal((len(S), 3))
    np.testing.assert_allclose(prec(torch.as_tensor(R)).numpy(), np.linalg.solve(A, R), rtol=1e-6, atol=1e-8)
    assert prec.inner_residuals[-1] < 1e-10 and 0 < prec.inner_iterations[-1] < 500
    gU = prec.fill(torch.as_tensor(R))  # the surrogate's prediction at U, one row per unobserved pixel
    assert gU.shape == (prec.unobserved.numel(), 3)
