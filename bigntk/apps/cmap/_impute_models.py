"""The models behind :func:`bigntk.apps.cmap.impute.impute`: fit once, predict any (cell, drug) pairs.

Both take a :class:`~bigntk.apps.cmap.impute.Selection` (training pairs re-coded to the selected cube)
and answer ``fit() -> state`` (α for the NTK, None for a baseline) and ``predict(cell, drug, state)``
→ (k, G) float32 for int code arrays ``cell``, ``drug`` of shape (k,).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch

from ...backend import to_numpy
from ...baselines import make_baseline
from ...operators import KernelOperator
from ...priors import Prior
from ...priors.cmap import SparseRegimePrior, cell_unit_means, mixed_prior, one_hot_prior, reference_profiles
from ...solvers import SOLVERS, check_options, choose_solver, solve
from .priors import PRIORS

METHODS = ("ntk", "mean", "dnpp", "falrtc")


def check_method(method: str, prior: str, solver: str, solver_options: Optional[dict] = None) -> None:
    """One clear error for an unknown method, prior or solver name (or a bad solver option)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method != "ntk":
        return
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    check_options(solver, dict(solver_options or {}))


class BaselineModel:
    """A baseline (``mean``, ``dnpp``, ``falrtc``) fitted on the selection's measured pairs.

    FaLRTC completes a whole tensor at once, so its predictions for every unmeasured pair of the cube
    are computed on the first call and served from memory after (the tensor is the cube).
    """

    #: bytes a predicted pair holds besides its output (nothing kernel-sized)
    bytes_per_query = 0

    def __init__(self, name: str, sel: Any, options: Optional[Dict[str, Any]] = None) -> None:
        self.name, self.sel = name, sel
        self.model = make_baseline(name, **dict(options or {})).fit(sel.Y, sel.cell, sel.drug)
        self._rows: Optional[np.ndarray] = None
        self._pred: Optional[np.ndarray] = None

    def fit(self) -> None:
        return None

    def _whole_cube(self) -> None:
        # FaLRTC checks its working tensors against the memory budget before it allocates them
        C, D, _ = self.sel.shape
        missing = np.ones(C * D, bool)
        missing[self.sel.train_index] = False
        idx = np.nonzero(missing)[0]
        self._rows = np.full(C * D, -1, np.int64)
        self._rows[idx] = np.arange(idx.size)
        self._pred = self.model.predict(idx // D, idx % D)

    def predict(self, cell: np.ndarray, drug: np.ndarray, state: Any = None) -> np.ndarray:
        """(k, G) float32 predictions of pairs (cell[i], drug[i])."""
        if self.name != "falrtc":
            return np.asarray(self.model.predict(cell, drug), np.float32)
        if self._pred is None:
            self._whole_cube()
        rows = self._rows[np.asarray(cell) * self.sel.shape[1] + np.asarray(drug)]
        if (rows < 0).any():
            raise ValueError("falrtc serves unmeasured pairs only")
        return np.asarray(self._pred[rows], np.float32)


class NTKModel:
    """NTK completion of the genes × pairs matrix: α = (K_train + ridge·I)⁻¹ Y_train, ŷ = K(query, train) α.

    Factorised priors (``sparse``, ``onehot``) get one operator over the whole cube (column
    c · D + d is pair (c, d)); a mixed prior's columns carry a baseline's imputation, so its kernel
    is built per query batch over [training pairs, query pairs].
    """

    def __init__(self, sel: Any, cfg: Dict[str, Any], *, device: Any = None, dtype: Any = None,
                 memory_budget: Optional[int] = None, progress: bool = True, client: Any = None) -> None:
        self.sel, self.cfg, self.progress, self.client = sel, cfg, progress, client
        C, D, _ = sel.shape
        self.op_kw = dict(depth=cfg["depth"], device=device, dtype=dtype, memory_budget=memory_budget)
        prior = cfg["prior"]
        if prior != "onehot":
            self.M = cell_unit_means(sel.Y, sel.cell, C)
            self.E = reference_profiles(sel.Y, sel.cell, sel.drug, sel.reference, D)
        self.base: Optional[BaselineModel] = None
        if prior.startswith("mixed-"):
            name = prior.split("-", 1)[1]
            self.base = BaselineModel(name, sel, cfg.get("baseline_options", {}).get(name, {}))
            self.op: Optional[KernelOperator] = None
        else:
            cube = np.arange(C * D)
            self.op = self._operator(self._prior(cube // D, cube % D))
        self.train = torch.as_tensor(sel.train_index)

    def _operator(self, prior: Prior) -> KernelOperator:
        """The NTK over the prior's columns: in process, or sharded over the client's workers."""
        from ...completion import ntk_operator_on

        return ntk_operator_on(self.client, prior, **self.op_kw)

    def _prior(self, cell: np.ndarray, drug: np.ndarray, imputation: Optional[np.ndarray] = None) -> Prior:
        """The configured prior over columns (cell[j], drug[j]); ``imputation`` (G, n) for a mixed one."""
        nugget, prior = self.cfg["nugget"], self.cfg["prior"]
        if prior == "onehot":
            return one_hot_prior(cell, drug, "both", nugget=nugget)
        sparse = SparseRegimePrior(cell, drug, self.M, self.E, self.cfg["w"], nugget)
        return sparse if imputation is None else mixed_prior(imputation, sparse, nugget=nugget)

    @property
    def bytes_per_query(self) -> int:
        """Bytes one query pair's kernel row over the training pairs costs while it is computed."""
        entry = self.op.entry_bytes if self.op is not None else 40
        return int(self.sel.Y.shape[0]) * int(entry)

    def _train_operator(self) -> KernelOperator:
        if self.op is not None:
            return self.op.restrict(self.train)
        return self._operator(self._prior(self.sel.cell, self.sel.drug, self.sel.Y.T))

    def fit(self, checkpoint: Optional[str] = None) -> np.ndarray:
        """α (n_train, G) float64 through :func:`bigntk.solvers.solve` (deterministic: seeded solvers).

        ``checkpoint``: where an EigenPro fit saves its state every 200 steps and resumes from (bitwise)."""
        options = dict(self.cfg.get("solver_options") or {})
        op = self._train_operator()
        name = choose_solver(op, self.cfg["solver"])
        if name == "eigenpro":
            options.setdefault("progress", self.progress)
            if checkpoint is not None:
                options.setdefault("checkpoint", str(checkpoint))
                options.setdefault("checkpoint_every", 200)
        res = solve(op, self.sel.Y, name, ridge=float(self.cfg["ridge"]), **options)
        return to_numpy(res.alpha).astype(np.float64)

    def _working(self, state: np.ndarray) -> torch.Tensor:
        """α in the operator's working dtype, rounded once for all chunks (what its tiles multiply by)."""
        if getattr(self, "_alpha_w", (None, None))[0] is not state:
            alpha = torch.as_tensor(np.ascontiguousarray(state))  # a fit's α may be column-major
            self._alpha_w = (state, alpha.to(device=self.op.device, dtype=self.op.dtype))
        return self._alpha_w[1]

    def predict(self, cell: np.ndarray, drug: np.ndarray, state: np.ndarray) -> np.ndarray:
        """(k, G) float32: K(query, train) @ α, streamed within the operator's memory budget."""
        cell, drug = np.asarray(cell, np.int64), np.asarray(drug, np.int64)
        if self.op is not None:
            rows = torch.as_tensor(cell * self.sel.shape[1] + drug)
            out = self.op.matmul(self._working(state), rows=rows, cols=self.train)
        else:
            imp = np.concatenate([self.sel.Y, self.base.predict(cell, drug)]).T
            op = self._operator(self._prior(np.concatenate([self.sel.cell, cell]),
                                            np.concatenate([self.sel.drug, drug]), imp))
            n = self.sel.Y.shape[0]
            out = op.matmul(state, rows=torch.arange(n, n + cell.size), cols=torch.arange(n))
        out = to_numpy(out).astype(np.float32)
        if not np.isfinite(out).all():
            raise FloatingPointError("the NTK predictions are not finite; rescale the data or use dtype='float64'")
        return out
