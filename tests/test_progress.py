"""Progress bars: one policy (bigntk.progress), nothing in non-interactive logs, bars that count real work."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

PACKAGE = Path(__file__).resolve().parents[1] / "bigntk"


def test_no_module_but_progress_makes_a_tqdm_bar():
    users = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if p.name != "progress.py" and re.search(r"^\s*(from tqdm|import tqdm)", p.read_text(), re.M)]
    assert not users, users


def _work(tmp_path: Path) -> None:
    """A little of everything that shows a bar by default: synth, aggregate, lin-RFM, CG."""
    from bigntk.apps.cmap.synth import synthesize
    from bigntk.lowrank import lin_rfm
    from bigntk.operators import DenseOperator
    from bigntk.solvers import ConjugateGradient
    from bigntk.store import aggregate

    st = synthesize(tmp_path / "s.zarr", profiles=300, cells=4, drugs=20, genes=8, n_dense=1, chunk_rows=100)
    aggregate(st, max_bytes=2 * 8 * 8 * 20)  # several passes over the store
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((20, 2)) @ rng.standard_normal((2, 20))
    lin_rfm(Y, rng.random(Y.shape) < 0.6, max_iter=5)
    A = rng.standard_normal((30, 30))
    ConjugateGradient(max_iter=100, tol=1e-3).fit(DenseOperator(torch.as_tensor(A @ A.T + 30 * np.eye(30))),
                                                  torch.ones(30, 1, dtype=torch.float64))


def test_default_bars_leave_nothing_in_a_log(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("BIGNTK_PROGRESS", raising=False)
    _work(tmp_path)  # stderr is captured, not a terminal
    err = capfd.readouterr().err
    assert "\r" not in err and "\x1b" not in err and "it/s" not in err, err[:500]


def test_forced_bars_count_what_is_done(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("BIGNTK_PROGRESS", "1")
    _work(tmp_path)
    err = capfd.readouterr().err
    assert re.search(r"aggregate \(\d+ passes over 300 profiles\)", err), err[-2000:]
    cg = [line for line in err.split("\r") if line.startswith("cg to 1e-03")]
    assert cg and not any("/100" in line for line in cg), cg[-1:]  # no total: CG stops at its tolerance
