"""DNPP's per-cell vectorised predict against the per-pair loop it replaced (same top-k, same weights)."""
import numpy as np

from bigntk.baselines import DNPP


def _loop_predict(m: DNPP, cell: np.ndarray, drug: np.ndarray) -> np.ndarray:
    """The previous DNPP.predict, one query pair at a time."""
    uq, qidx = np.unique(drug, return_inverse=True)
    sim, _ = m.similarity(uq)
    out = np.empty((cell.size, m.Y_.shape[1]), dtype=np.float32)
    by_cell = {c: np.nonzero(m.cell_ == c)[0] for c in np.unique(cell)}
    for i, (c, d) in enumerate(zip(cell.tolist(), drug.tolist())):
        base = m.means_[c] if c < m.n_cells_ else m.global_
        rows = by_cell.get(c, np.zeros(0, np.int64))
        if c >= m.n_cells_ or not rows.size or d >= m.n_drugs_:
            out[i] = base
            continue
        cand = m.drug_[rows]
        s = sim[qidx[i], cand]
        s = np.where((cand == d) | np.isnan(s), -np.inf, s)
        top = np.argsort(-s)[: m.k]
        w = np.clip(s[top], 0.0, 1.0)
        out[i] = base if w.sum() <= 0 else (w @ m.Y_[rows[top]]) / w.sum()
    return out


def test_dnpp_vectorised_equals_loop():
    rng = np.random.default_rng(0)
    nc, nd, G = 5, 60, 12
    keep = rng.random((nc, nd)) < np.array([0.9, 0.5, 0.2, 0.05, 0.0])[:, None]  # line 4: no profiles
    cell, drug = np.nonzero(keep)
    Y = (rng.standard_normal((nd, G))[drug] + rng.standard_normal((nc, G))[cell]).astype(np.float32)
    Y += 0.5 * rng.standard_normal(Y.shape).astype(np.float32)
    qc = np.repeat(np.arange(nc + 1), nd + 2)  # an unknown line and two unknown drugs too
    qd = np.tile(np.arange(nd + 2), nc + 1)
    for k in (1, 3, 10, 100):
        m = DNPP(k=k).fit(Y, cell, drug)
        np.testing.assert_allclose(m.predict(qc, qd), _loop_predict(m, qc, qd), rtol=1e-6, atol=1e-6)
