"""Vectorised FaLRTC against the implementation it replaced (tests/_falrtc_reference.py).

FaLRTC's iteration amplifies rounding: the Gram route to the singular values leaves the small ones
with absolute errors ~√ε·σ_max, comparable to the smoothing threshold μ/α, and after ~10 iterations
the *reference itself* moves by ~1e-2 when its input moves by 1e-13 (relative); on CMap-shaped data
(whole fibres missing) a 1-ulp change of the float32 profiles moves its output by 1e-3 after 2
iterations and 5e-2 after 3. So the two agree to 1e-5 where the problem allows it (entry masks:
all 20 iterations; fibre masks: the first iteration, its ~16-step line search included) and
otherwise to within the reference's own spread under a 1-ulp change of its input.
"""
import numpy as np
import pytest

import _falrtc_reference as ref
from bigntk.baselines import FaLRTC, complete_tensor


pytestmark = pytest.mark.usefixtures("one_thread")


def _cmap_like(seed: int = 0, nc: int = 6, nd: int = 40, G: int = 25):
    """Rank-3 (cell, drug) table with 30% of the pairs measured, and queries: all drugs in lines 0, 1."""
    rng = np.random.default_rng(seed)
    E, M = rng.standard_normal((nd, 3)), rng.standard_normal((nc, 3, G))
    keep = rng.random((nc, nd)) < 0.3
    cell, drug = np.nonzero(keep)
    Y = np.einsum("nk,nkg->ng", E[drug], M[cell]) + 0.1 * rng.standard_normal((cell.size, G))
    return Y.astype(np.float32), cell, drug, np.repeat([0, 1], nd), np.tile(np.arange(nd), 2)


def test_complete_tensor_equals_reference():
    rng = np.random.default_rng(0)
    for shape, alpha in [((30, 20, 6), (1.0, 1e-2, 1.0)), ((12, 9, 5, 4), (1.0, 1.0, 0.1, 1.0))]:
        T = (rng.standard_normal((shape[0], 3)) @ rng.standard_normal((3, int(np.prod(shape[1:]))))).reshape(shape)
        obs = rng.random(shape) < 0.6
        new = complete_tensor(T, obs, alpha=alpha, iterations=20)
        old = ref.complete_tensor(T, obs, alpha=alpha, iterations=20)
        np.testing.assert_allclose(new, old, atol=1e-5)
        np.testing.assert_array_equal(new[obs], T[obs].astype(np.float32))


def test_falrtc_equals_reference_first_iteration():
    Y, cell, drug, qc, qd = _cmap_like()  # iteration 1: ~16 backtracking steps, by the Gram expansion
    new = FaLRTC(iterations=1, progress=False).fit(Y, cell, drug).predict(qc, qd)
    np.testing.assert_allclose(new, ref.predict(Y, cell, drug, qc, qd, iterations=1), atol=1e-5)


def test_falrtc_within_reference_sensitivity_at_20_iterations():
    Y, cell, drug, qc, qd = _cmap_like(1)
    old = ref.predict(Y, cell, drug, qc, qd)
    old_moved = ref.predict(Y * np.float32(1 + 1e-7), cell, drug, qc, qd)  # 1 ulp: the reference's spread
    new = FaLRTC(progress=False).fit(Y, cell, drug).predict(qc, qd)
    spread = np.abs(old - old_moved).max()
    assert np.abs(new - old).max() <= 3 * spread + 1e-5
    seen = np.isin(qc * 1000 + qd, cell * 1000 + drug)
    np.testing.assert_array_equal(new[seen], Y[np.searchsorted(cell * 1000 + drug, (qc * 1000 + qd)[seen])])


def test_falrtc_memory_check_up_front():
    Y, cell, drug, qc, qd = _cmap_like()
    with pytest.raises(MemoryError, match=r"FaLRTC on a 40 x 6 x 25 tensor needs about .* memory budget"):
        FaLRTC(memory_budget="1MB", progress=False).fit(Y, cell, drug).predict(qc, qd)
    with pytest.raises(MemoryError, match="memory budget"):
        complete_tensor(np.zeros((100, 100, 30)), np.ones((100, 100, 30), bool), memory_budget="10MB")
