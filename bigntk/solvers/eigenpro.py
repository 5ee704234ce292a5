"""EigenPro 2: preconditioned mini-batch SGD for kernel regression, streamed from a kernel operator.

Solves (K + ridge·I) α = Y (K: n × n kernel operator, Y: n × l) without forming K, following

* S. Ma, M. Belkin, "Kernel machines that adapt to GPUs for effective large batch training",
  MLSys 2019 (EigenPro 2), and
* S. Ma, M. Belkin, "Diving into the shallows: a computational perspective on large-scale shallow
  learning", NeurIPS 2017 (EigenPro 1; the preconditioner);
* S. Ma, R. Bassily, M. Belkin, "The power of interpolation", ICML 2018 (batch size / step size).

Set-up. A Nyström subsample S (size s, seeded) gives the top eigensystem of K_SS / s:
λ_1 ≥ … ≥ λ_{q+1} with unit eigenvectors e_i. The preconditioner P flattens the top-q spectrum of the
kernel's covariance operator to λ_{q+1}; on coefficients it acts through the subsample only:

    α_S  +=  (η/m) · F Fᵀ K_{S,B} g,     F = E_q · diag(√((1 − λ_{q+1}/λ_i) / (s λ_i))).

Automatic parameters (the published formulas), with β the largest diagonal entry of the preconditioned
kernel K_P = K − K_{·,S} F Fᵀ K_{S,·} (+ ridge) — EigenPro 2's β(K_P), measured on S and on the fresh
points T of the safety check; K_P(x, x) = K(x, x) minus the part of x the top q directions hold, often
several times below max_i K_ii, and the step grows in proportion:

* q: the largest q whose critical batch size m*(q) = β / λ_{q+1} fits the batch capacity m_max
  (from the memory budget), i.e. q = #{i : λ_i > β / m_max} (EigenPro 2, §4), capped at s/4;
* batch m = min(m*(q), m_max, n);
* step η(m) = m / β for m ≤ m*, and η(m) = 2m / (β + (m − 1) λ_{q+1}) beyond (Ma et al. 2018, Thm 4);
  with a ridge, λ_{q+1} is shifted by ridge / n. A batch of all n points (sampled without replacement)
  is the exact gradient: η = 1/λ_{q+1}, the rule's value at m = m* and its noise-free limit;
* safety check (ours, not in the papers): batch and step use max(λ_{q+1}, λ_check), λ_check the top
  eigenvalue of the preconditioned kernel on t fresh training points outside S (power iteration). A
  subsample cannot see how much of the spectrum its eigenvectors miss on other points; when q reaches
  into a highly degenerate eigenspace the true preconditioned top is several times λ_{q+1}, and a step
  set from λ_{q+1} alone diverges.

Full-batch mode (``full_batch="auto"``: operators with a fast product, ``op.fast_matmul``, such as the
polyphase CNTK). When one product over all n points costs a few milliseconds, the batch is the whole
training set: an epoch is one step of preconditioned gradient descent. Without gradient noise the
step is no longer limited by β — η = 1/λ_{q+1}, as for any batch of all n points — and q is
no longer limited by the critical batch: it takes the largest value the subsample supports (s/4, with
a larger default s), so the convergence factor per step, 1 − λ_min/λ_{q+1}, improves with every added
eigenvector. On a fast-product operator λ_check is measured on all training points (exact up to the
power iteration, whatever the mode), and the subsample correction K_{S,·} g is one more fast product.

One step on batch B: g = K_{B,·} α + ridge·α_B − Y_B; α_B −= (η/m) g; then the subsample correction.
An epoch visits every training point once in a seeded random order (the permutation of epoch e depends
only on (seed, e), which is what makes resume bitwise exact).

Stopping: ``epochs``; ``tol`` on the epoch's relative train residual; or early stopping on a held-out
fraction of the points (``val_fraction``, ``patience``): the best weights on held-out error are kept.
Checkpoints: ``checkpoint=PATH`` saves (weights, epoch, step, best weights, history, set-up) every
``checkpoint_every`` steps to a zarr group, atomically; a second call with the same configuration
resumes; another configuration is refused.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .. import backend, persist
from ..operators.base import KernelOperator
from ..progress import bar
from .checkpoint import config_hash, load_checkpoint, save_checkpoint
from .policy import SolveResult, warn_not_converged

__all__ = ["EigenPro", "eigenpro_parameters"]

#: an epoch's relative train residual above this (zero weights give 1) means the iteration diverged
DIVERGED_RESIDUAL = 1e3

#: largest automatic Nyström subsample in full-batch mode (set-up: an s × s block and its top s/4 eigenpairs)
FULL_BATCH_MAX_SUBSAMPLE = 6000


def _auto_q(eigvals: np.ndarray, beta: float, m_max: int, s: int) -> int:
    """q = #{λ_i > β / m_max}, in [1, s/4] (EigenPro 2, §4)."""
    q = int(np.sum(eigvals[: max(min(s - 1, len(eigvals) - 1), 1)] > beta / m_max))
    return max(1, min(q, max(1, s // 4)))


def eigenpro_parameters(eigvals: np.ndarray, beta: float, n: int, m_max: int, ridge: float = 0.0,
                        q: int | None = None, s: int | None = None, lambda_check: float | None = None,
                        batch_size: int | None = None, full_batch: bool = False) -> dict[str, float]:
    """q, batch size m and step size η from the subsample eigenvalues (see module docstring).

    eigvals: the leading (descending) eigenvalues of K_SS / s — all s of them, or at least the top
    min(s, s // 4 + 2) (q never exceeds s // 4); s: the subsample size (default len(eigvals)).
    lambda_check: the top of the preconditioned spectrum measured on fresh points (``EigenPro`` set-up);
    batch and step use max(λ_{q+1}, lambda_check), so a preconditioner that flattens less than the
    subsample promised cannot make the iteration diverge.
    batch_size: a fixed batch instead of min(m*, m_max, n); the step follows it.
    full_batch: batch n and η = 1/λ_{q+1} (noise-free gradient descent); q defaults to s/4.
    """
    s = len(eigvals) if s is None else int(s)
    if q is None:
        q = _auto_q(eigvals, beta, math.inf if full_batch else m_max, s)
    q = int(min(q, s - 1, len(eigvals) - 1))
    lam_nys = float(eigvals[q])
    lam_q1 = max(lam_nys, float(lambda_check or 0.0)) + ridge / n
    m_star = beta / lam_q1
    if full_batch:
        m = int(n)
    elif batch_size is None:
        m = int(max(1, min(m_max, n, math.floor(m_star) if m_star >= 1 else 1)))
    else:
        m = int(min(batch_size, n))
    if m == n:  # the exact gradient: no noise term, the m → ∞ limit of the rule (= its value at m = m*)
        eta = 1.0 / lam_q1
    else:
        eta = m / beta if m <= m_star else 2 * m / (beta + (m - 1) * lam_q1)
    return {"q": q, "batch_size": m, "step_size": float(eta), "full_batch": bool(full_batch),
            "lambda_q1": lam_q1, "lambda_q1_nystrom": lam_nys,
            "lambda_check": None if lambda_check is None else float(lambda_check), "lambda_1": float(eigvals[0]),
            "beta": float(beta), "critical_batch": float(m_star)}


def top_eigh(A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest eigenpairs of the symmetric (s, s) matrix A: ((k,) descending, (s, k)).

    On the CPU LAPACK's syevr computes only those k (about half the time of a full decomposition
    at s = 3000 with k = s/4: the EigenPro set-up at s ≈ 12 000 is dominated by it); elsewhere a full
    ``torch.linalg.eigh``.
    """
    s = A.shape[0]
    k = int(min(max(k, 1), s))
    if A.device.type == "cpu" and k < s:
        from scipy.linalg import eigh

        lam, E = eigh(A.numpy(), subset_by_index=[s - k, s - 1], driver="evr")
        lam, E = torch.from_numpy(lam), torch.from_numpy(E)
    else:
        lam, E = torch.linalg.eigh(A)
        lam, E = lam[s - k:], E[:, s - k:]
    return lam.flip(0), E.flip(1)


#: bytes per entry of the s × s Nyström set-up: the float64 block and LAPACK's copy of it (16), the
#: (s, s/4) eigenvectors (2), the row strips the block is filled from (≤ 4, :data:`STRIP_BYTES_PER_ENTRY`)
SETUP_BYTES_PER_ENTRY = 22
#: the set-up's blocks are built in row strips whose temporaries take at most this many bytes per
#: entry of the result: they live side by side, and a whole-block tile could add the whole budget
STRIP_BYTES_PER_ENTRY = 4



def _subsample_size(n: int, full: bool, budget: int) -> int:
    """The auto Nyström subsample: min(n, max(1000, min(12000, n // 8))) (EigenPro 2; full batch:
    min(FULL_BATCH_MAX_SUBSAMPLE, n // 2)), capped so that the set-up fits the memory budget."""
    s = min(n, max(1000, min(FULL_BATCH_MAX_SUBSAMPLE, n // 2) if full else min(12000, n // 8)))
    cap = int(math.sqrt(max(budget, 1) / SETUP_BYTES_PER_ENTRY))
    return max(min(s, cap), min(n, 500))


def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) + 1)
    return torch.randperm(n, generator=g)


class EigenPro:
    """EigenPro 2 solver for (K + ridge·I) α = Y on a :class:`~bigntk.operators.KernelOperator`.

    Parameters
    ----------
    epochs : int
        Maximum number of passes over the training points.
    subsample_size : int or "auto"
        Nyström subsample s; auto = min(n, max(1000, min(12000, n // 8))) (grows with n, as in EigenPro 2);
        in full-batch mode min(n, max(1000, min(FULL_BATCH_MAX_SUBSAMPLE, n // 2))); either capped at
        √(memory budget / SETUP_BYTES_PER_ENTRY) (≈ 9 900 under the 2 GiB CPU default) so that the
        s × s set-up stays in the budget.
    top_q, batch_size, step_size : int / float or "auto" (see module docstring).
    full_batch : bool or "auto"
        One preconditioned gradient step per epoch over all points (module docstring); auto = the
        operator has a fast product (``operator.fast_matmul``) and ``batch_size`` is "auto".
    max_batch : int, optional
        Batch capacity m_max; default from the operator's memory budget (a batch row strip of the
        kernel, m × n, in the working dtype plus its temporaries, ``operator.entry_bytes``), clipped to
        [64, 8192].
    ridge : float ≥ 0
    seed : int — subsample, epoch orders and held-out split.
    tol : float, optional — stop when the epoch's relative train residual ‖r‖²/‖Y‖² falls below it.
    val_fraction : float in [0, 0.5) — held-out points for early stopping (0 = none).
    patience : int — epochs without held-out improvement before stopping.
    checkpoint : path, optional; checkpoint_every : steps between checkpoints.
    progress : bool — tqdm bar (epoch, train error, step size, kernel entries/s).
    callback : callable(step, alpha), optional — called after every step (monitoring, tests).
    """

    def __init__(self, epochs: int = 20, *, subsample_size: int | str = "auto", top_q: int | str = "auto",
                 batch_size: int | str = "auto", step_size: float | str = "auto", max_batch: int | None = None,
                 ridge: float = 0.0, seed: int = 0, tol: float | None = None, val_fraction: float = 0.0,
                 patience: int = 3, checkpoint: str | None = None, checkpoint_every: int = 50,
                 progress: bool = True, callback: Callable | None = None, full_batch: bool | str = "auto"):
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        if not 0.0 <= val_fraction < 0.5:
            raise ValueError(f"val_fraction must lie in [0, 0.5), got {val_fraction}")
        if tol is not None and not (math.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be None or a finite number > 0, got {tol}")
        if int(patience) < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        store = persist.enclosing_store(checkpoint) if checkpoint is not None else None
        if store is not None:
            raise ValueError(f"checkpoint {checkpoint} is inside the store {store}; choose a path outside it")
        self.epochs, self.subsample_size, self.top_q = int(epochs), subsample_size, top_q
        self.batch_size, self.step_size, self.max_batch = batch_size, step_size, max_batch
        self.ridge, self.seed, self.tol = float(ridge), int(seed), tol
        self.val_fraction, self.patience = float(val_fraction), int(patience)
        self.checkpoint, self.checkpoint_every = checkpoint, max(1, int(checkpoint_every))
        self.progress, self.callback = progress, callback
        if full_batch not in (True, False, "auto"):
            raise ValueError(f"full_batch must be True, False or 'auto', got {full_batch!r}")
        self.full_batch = full_batch

    # ------------------------------------------------------------------ helpers
    def _config(self, op: KernelOperator, *arrays: np.ndarray) -> str:
        cfg = {k: getattr(self, k) for k in ("epochs", "subsample_size", "top_q", "batch_size", "step_size",
                                             "max_batch", "ridge", "seed", "tol", "val_fraction", "patience",
                                             "full_batch")}
        cfg.update(solver="eigenpro", n=op.n, operator=op.fingerprint(), dtype=str(op.dtype))
        return config_hash(cfg, *arrays)

    def _split(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.val_fraction <= 0:
            return torch.arange(n), torch.arange(0)
        g = torch.Generator().manual_seed(self.seed + 7919)
        perm = torch.randperm(n, generator=g)
        n_val = max(1, int(round(self.val_fraction * n)))
        return perm[n_val:].sort().values, perm[:n_val].sort().values

    def _is_full_batch(self, op: KernelOperator) -> bool:
        if self.full_batch == "auto":
            return bool(op.fast_matmul) and self.batch_size == "auto"
        return bool(self.full_batch)

    def _setup(self, op: KernelOperator, train: torch.Tensor) -> dict[str, Any]:
        n = train.numel()
        full = self._is_full_batch(op)
        s = (_subsample_size(n, full, op.memory_budget) if self.subsample_size == "auto"
             else min(int(self.subsample_size), n))
        g = torch.Generator().manual_seed(self.seed)
        sub = torch.randperm(n, generator=g)[:s].sort().values
        S_idx = train[sub].to(op.device)
        Kss = op.block(S_idx, S_idx, dtype=backend.ACCUM_DTYPE, budget=STRIP_BYTES_PER_ENTRY * s * s)
        Kss /= s
        k = min(s, max(s // 4, 0 if self.top_q == "auto" else int(self.top_q)) + 2)
        lam, E = top_eigh(Kss, k)
        del Kss
        lam = lam.clamp_min(0)
        diag = op.diag()
        beta = float(diag[train.to(op.device)].max()) + self.ridge
        itemsize = torch.finfo(op.dtype).bits // 8
        # a batch row strip of the kernel (the tile and its temporaries, ``entry_bytes``) within the budget
        per_row = (itemsize + op.entry_bytes) * max(n, 1) + itemsize * s  # and its K_{B,S} block
        m_max = self.max_batch or int(np.clip(op.memory_budget // per_row, 64, 8192))
        lam_np = backend.to_numpy(lam)
        if self.top_q == "auto":
            q = _auto_q(lam_np, beta, math.inf if full else m_max, s)
        else:
            q = int(min(int(self.top_q), s - 1, k - 1))
        F = self._preconditioner_factor(lam, E, q, s)
        lam_check, beta_fresh = self._check_spectrum(op, train, sub, F)
        # β of the preconditioned kernel: max_x K_P(x, x) on S (from its eigenpairs: K_SS F = F·sλ) and T
        diag_S = diag[S_idx].to(backend.ACCUM_DTYPE) - ((F * (s * lam[:q])) ** 2).sum(1)
        beta_p = max(float(diag_S.max()), beta_fresh or 0.0) + self.ridge
        p = eigenpro_parameters(lam_np, beta_p, n, m_max, self.ridge, q, s=s, lambda_check=lam_check,
                                batch_size=None if self.batch_size == "auto" else int(self.batch_size),
                                full_batch=full)
        if self.step_size != "auto":
            p["step_size"] = float(self.step_size)
        p["subsample_size"], p["beta_kernel"] = int(s), beta
        return {"sub": sub, "F": F, "params": p, "m_max": m_max, "s": s}

    @staticmethod
    def _preconditioner_factor(lam: torch.Tensor, E: torch.Tensor, q: int, s: int) -> torch.Tensor:
        """F (s, q) of the module docstring: flattens the subsample's top-q spectrum to λ_{q+1}."""
        lq = float(lam[q])
        lam_top = lam[:q].clamp_min(lq)
        scale = ((1 - lq / lam_top) / (s * lam_top)).clamp_min(0).sqrt()
        return E[:, :q] * scale[None, :]

    def _check_spectrum(self, op: KernelOperator, train: torch.Tensor, sub: torch.Tensor, F: torch.Tensor,
                        iters: int = 40) -> tuple[float | None, float | None]:
        """Top eigenvalue of the preconditioned kernel (K_TT − K_TS F Fᵀ K_ST) / t on t training points T,
        and (with tiles) the largest diagonal entry of that kernel on T, (None, None) when S is all.

        It estimates the preconditioned covariance operator beyond the subsample that built F. The
        subsample's own λ_{q+1} can be far too optimistic — at n = 5000 on a 20-dim NTK problem
        (s = 1000, q = 230, where a 1 540-fold degenerate eigenspace starts) it was 7× below this
        check, and the step it implied diverged. Power iteration. With tiles, T is t = min(s, n − s)
        fresh points (kernel cost 2·t·s entries, held); with a fast product T is every training point
        (S ⊂ T, so K_ST v is a slice of K_TT v) and each iteration is two products — the exact top of
        the preconditioned operator the iteration sees.
        """
        n, s = train.numel(), sub.numel()
        g = torch.Generator().manual_seed(self.seed + 104_729)
        dev, S = op.device, train[sub].to(op.device)
        F64 = F.to(backend.ACCUM_DTYPE)
        if op.fast_matmul:
            T, sub_d = train.to(dev), sub.to(dev)

            def apply(v: torch.Tensor) -> torch.Tensor:
                Kv = op.matmul(v, rows=T, cols=T)
                return (Kv - op.matmul(F64 @ (F64.T @ Kv[sub_d]), rows=T, cols=S)) / T.numel()
        else:
            t = min(s, n - s)
            if t < 2:
                return None, None  # the subsample is the whole training set: λ_{q+1} is exact
            rest = torch.ones(n, dtype=torch.bool)
            rest[sub] = False
            fresh = torch.nonzero(rest).reshape(-1)
            T = train[fresh[torch.randperm(fresh.numel(), generator=g)[:t]].sort().values].to(dev)
            # working dtype: an eigenvalue estimate needs no more
            strip = STRIP_BYTES_PER_ENTRY * t * s
            B_TT, B_TS = op.block(T, T, budget=strip), op.block(T, S, budget=strip)

            def held(B: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                return B.matmul(v.to(op.dtype)).to(backend.ACCUM_DTYPE)

            def apply(v: torch.Tensor) -> torch.Tensor:
                return (held(B_TT, v) - held(B_TS, F64 @ (F64.T @ held(B_TS.T, v)))) / T.numel()

            diag_T = B_TT.diagonal().to(backend.ACCUM_DTYPE) - ((B_TS.to(backend.ACCUM_DTYPE) @ F64) ** 2).sum(1)
        t = T.numel()
        v = torch.randn(t, 1, generator=g, dtype=backend.ACCUM_DTYPE).to(dev)
        lam = 0.0
        for _ in range(iters):
            v = v / v.norm()
            w = apply(v)
            lam = float((v * w).sum())  # Rayleigh quotient: converges fast even for clustered eigenvalues
            v = w
        return max(lam, 0.0), (None if op.fast_matmul else float(diag_T.max()))

    @staticmethod
    def _subsample_product(op: KernelOperator, S: torch.Tensor, B: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """K_{S,B} g (s, l) in float64, streamed within the memory budget (a fast product where the operator
        has one; on a sharded operator the shards compute it and only the (s, l) result travels)."""
        return op.matmul(g, rows=S, cols=B)

    # ------------------------------------------------------------------ fit
    def fit(self, operator: KernelOperator, Y: Any, *, alpha0: Any = None) -> SolveResult:
        """Run EigenPro on ``operator`` (n points) with targets ``Y`` ((n,) or (n, l)).

        ``alpha0`` ((n,) or (n, l), optional) starts the iteration from these weights instead of zero
        (a warm start, e.g. a fit on more points; the stopping rules are the same).
        Returns a :class:`~bigntk.solvers.SolveResult` (``params``: q, batch, step, spectrum figures).
        """
        op, dev = operator, operator.device
        Yt = _check_targets(Y, op)
        a0 = None if alpha0 is None else _check_targets(alpha0, op)
        if a0 is not None and a0.shape != Yt.shape:
            raise ValueError(f"alpha0 must have the shape of Y {tuple(Yt.shape)}, got {tuple(a0.shape)}")
        arrays = [backend.to_numpy(Yt)] + ([] if a0 is None else [backend.to_numpy(a0)])
        chash = self._config(op, *arrays) if self.checkpoint else ""
        train, val = self._split(op.n)
        st = self._restore(op, chash, train, val, Yt.shape[1])
        if a0 is not None and st.global_step == 0:
            st.a.copy_(a0[train.to(dev)])
        self.params_ = dict(st.setup["params"])  # available during the fit too (callbacks, interrupted runs)
        loop = _Loop(op, self, st, train.to(dev), val.to(dev), Yt, chash)
        loop.run()
        final = st.best if (val.numel() and st.best_val < float("inf")) else st.a
        alpha = torch.zeros(op.n, Yt.shape[1], dtype=backend.ACCUM_DTYPE, device=dev)
        alpha[train.to(dev)] = final
        reached = bool(st.stopped.startswith("train residual"))
        converged = None if self.tol is None else reached
        if self.tol is not None and not reached and not val.numel():
            warn_not_converged("eigenpro", f"{self.epochs} epochs", self.tol)
        return SolveResult(alpha=alpha, solver="eigenpro", history=st.history, iterations=len(st.history),
                           stopped=st.stopped or f"{self.epochs} epochs", converged=converged,
                           params=dict(st.setup["params"]), train_index=train, val_index=val)

    def _restore(self, op: KernelOperator, chash: str, train: torch.Tensor, val: torch.Tensor, l: int) -> "_State":
        """The checkpointed state of this configuration, or a fresh one after the set-up."""
        state = load_checkpoint(self.checkpoint, chash) if self.checkpoint else None
        if state is not None:
            return _State.from_checkpoint(*state, device=op.device, has_val=bool(val.numel()))
        return _State.fresh(self._setup(op, train), train.numel(), l, op.device, bool(val.numel()))


def _check_targets(Y: Any, op: KernelOperator) -> torch.Tensor:
    Yt = backend.to_tensor(Y, device=op.device, dtype=backend.ACCUM_DTYPE)
    Yt = Yt[:, None] if Yt.ndim == 1 else Yt
    if Yt.ndim != 2 or Yt.shape[0] != op.n:
        raise ValueError(f"Y must have shape (n={op.n}, l), got {tuple(Yt.shape)}")
    if not bool(torch.isfinite(Yt).all()):
        raise ValueError("Y contains NaN or inf")
    return Yt


#: scalar fields of the iteration state, saved as checkpoint attributes
_SCALARS = ("epoch", "step_in_epoch", "global_step", "history", "best_val", "bad_epochs", "epoch_sq",
            "epoch_ysq", "stopped")


@dataclass
class _State:
    """Everything an interrupted fit needs to continue bit for bit (saved whole in each checkpoint)."""

    setup: dict  # sub (s,), F (s, q), params, m_max, s
    a: torch.Tensor  # (n_train, l) weights
    best: torch.Tensor  # best weights on held-out points (``a`` itself without a held-out set)
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list = field(default_factory=list)
    best_val: float = float("inf")
    bad_epochs: int = 0
    epoch_sq: float = 0.0
    epoch_ysq: float = 0.0
    stopped: str = ""

    @classmethod
    def fresh(cls, setup: dict, n: int, l: int, device, has_val: bool) -> "_State":
        a = torch.zeros(n, l, dtype=backend.ACCUM_DTYPE, device=device)
        return cls(setup, a, a.clone() if has_val else a)

    @classmethod
    def from_checkpoint(cls, arrs: dict, attrs: dict, *, device, has_val: bool) -> "_State":
        setup = {"sub": torch.from_numpy(arrs["sub"]), "F": torch.from_numpy(arrs["F"]).to(device),
                 "params": attrs["params"], "m_max": attrs["m_max"], "s": attrs["s"]}
        a = torch.from_numpy(arrs["alpha"]).to(device)
        best = torch.from_numpy(arrs["best_alpha"]).to(device) if has_val else a
        return cls(setup, a, best, **{k: attrs[k] if k != "stopped" else attrs.get(k, "") for k in _SCALARS})

    def save(self, path: str | None, chash: str, status: str = "running") -> None:
        if not path:
            return
        has_val = self.best is not self.a
        arrays = {"alpha": backend.to_numpy(self.a),
                  # the best-on-held-out weights only exist with a held-out set
                  "best_alpha": backend.to_numpy(self.best) if has_val else np.zeros((0, self.a.shape[1])),
                  "sub": backend.to_numpy(self.setup["sub"]), "F": backend.to_numpy(self.setup["F"])}
        attrs = {"config_hash": chash, "params": self.setup["params"], "m_max": self.setup["m_max"],
                 "s": self.setup["s"], "status": status, **{k: getattr(self, k) for k in _SCALARS}}
        save_checkpoint(path, arrays, attrs)


class _Loop:
    """The epoch loop of one fit: mini-batch steps, epoch records, early stopping, checkpoints."""

    def __init__(self, op: KernelOperator, solver: EigenPro, st: _State, train: torch.Tensor, val: torch.Tensor,
                 Yt: torch.Tensor, chash: str):
        self.op, self.solver, self.st, self.train, self.val, self.Yt = op, solver, st, train, val, Yt
        self.Ytr, self.chash = Yt[train], chash
        p = st.setup["params"]
        self.m, self.eta = int(p["batch_size"]), float(p["step_size"])
        self.sub, self.F = st.setup["sub"].to(op.device), st.setup["F"].to(op.device)
        self.steps_per_epoch = math.ceil(train.numel() / self.m)
        s, q, l = self.F.shape[0], self.F.shape[1], Yt.shape[1]
        # Fᵀ K_{S,B} g as (K_{B,S} F)ᵀ g costs m·q·(s + l) multiply-adds instead of s·l·(m + q): cheaper
        # with many outputs (the CMap shape: l = 978 > q)
        self.Fw = self.F.to(op.dtype) if self.m * q * (s + l) < s * l * (self.m + q) else None
        # the weights in the working dtype, kept in step with st.a (a step changes only the batch's and
        # the subsample's rows): tile products would otherwise round all n × l weights every step
        self.aw = st.a.to(op.dtype) if op.tile_products and op.dtype != st.a.dtype else None

    def run(self) -> None:
        st, sv = self.st, self.solver
        bar = _bar(sv.progress, sv.epochs * self.steps_per_epoch,
                   st.epoch * self.steps_per_epoch + st.step_in_epoch)
        self.t0, self.e0 = time.perf_counter(), self.op.entries_evaluated
        while not st.stopped and st.epoch < sv.epochs:
            perm = _epoch_permutation(self.train.numel(), sv.seed, st.epoch).to(self.op.device)
            while st.step_in_epoch < self.steps_per_epoch:
                self.step(perm[st.step_in_epoch * self.m : (st.step_in_epoch + 1) * self.m], bar)
            self.end_epoch()
        if bar is not None:
            bar.close()
        st.save(sv.checkpoint, self.chash, "done")

    def step(self, B: torch.Tensor, bar) -> None:
        """One preconditioned step on batch B (positions among the training points)."""
        st, op, sv, train = self.st, self.op, self.solver, self.train
        a = st.a if self.aw is None else self.aw
        Ka, K_BS = op.matmul_with_columns(a, train[B], train, self.sub)  # K_{B,S} from the same tiles
        g = Ka - self.Ytr[B]
        st.epoch_sq += float((g * g).sum())
        st.epoch_ysq += float((self.Ytr[B] ** 2).sum())
        if sv.ridge:
            g = g + sv.ridge * st.a[B]
        # per-point step η/m for every batch: the epoch's last, smaller batch takes the same (the rule's
        # η(b)/b only grows as b shrinks, so η/m is safe for it; η/b would not be, beyond m*)
        st.a[B] -= (self.eta / self.m) * g
        st.a[self.sub] += (self.eta / self.m) * (self.F @ self._projected_correction(B, g, K_BS))
        if self.aw is not None:
            self.aw[B], self.aw[self.sub] = st.a[B].to(self.aw.dtype), st.a[self.sub].to(self.aw.dtype)
        st.step_in_epoch += 1
        st.global_step += 1
        if sv.callback is not None:
            sv.callback(st.global_step, st.a)
        if bar is not None:
            dt = max(time.perf_counter() - self.t0, 1e-9)
            bar.update(1)
            bar.set_postfix(epoch=st.epoch + 1, train=f"{st.epoch_sq / max(st.epoch_ysq, 1e-300):.3g}",
                            eta=f"{self.eta:.3g}", entries_s=f"{(op.entries_evaluated - self.e0) / dt:.3g}")
        if st.global_step % sv.checkpoint_every == 0:
            st.save(sv.checkpoint, self.chash)

    def _projected_correction(self, B: torch.Tensor, g: torch.Tensor, K_BS: torch.Tensor | None) -> torch.Tensor:
        """Fᵀ K_{S,B} g, (q, l) float64; K_{B,S} in the working dtype as a tile product is."""
        if K_BS is None:
            return self.F.T @ EigenPro._subsample_product(self.op, self.train[self.sub], self.train[B], g)
        gw = g.to(K_BS.dtype)
        if self.Fw is not None:
            return ((K_BS @ self.Fw).T @ gw).to(backend.ACCUM_DTYPE)
        return self.F.T @ (K_BS.T @ gw).to(backend.ACCUM_DTYPE)

    def end_epoch(self) -> None:
        """Record the epoch, update the held-out best and the stopping reason, start the next epoch."""
        st, sv = self.st, self.solver
        rec = {"epoch": st.epoch + 1, "train_rel_mse": st.epoch_sq / max(st.epoch_ysq, 1e-300),
               "seconds": time.perf_counter() - self.t0}
        if self.val.numel():
            vp = self.op.matmul(st.a, rows=self.val, cols=self.train)
            v = rec["val_mse"] = float(((vp - self.Yt[self.val]) ** 2).mean())
            if v < st.best_val:
                st.best_val, st.bad_epochs, st.best = v, 0, st.a.clone()
            else:
                st.bad_epochs += 1
                if st.bad_epochs >= sv.patience:
                    st.stopped = f"held-out error did not improve for {st.bad_epochs} epochs"
        if not rec["train_rel_mse"] <= DIVERGED_RESIDUAL:  # also NaN
            raise FloatingPointError(
                f"EigenPro diverged: relative train residual {rec['train_rel_mse']:.3g} after epoch {rec['epoch']} "
                f"(zero weights give 1); pass a smaller step_size (automatic: {self.eta:.3g}) or batch_size")
        if sv.tol is not None and rec["train_rel_mse"] < sv.tol:
            st.stopped = f"train residual {rec['train_rel_mse']:.3g} < tol"
        st.history.append(rec)
        st.epoch, st.step_in_epoch, st.epoch_sq, st.epoch_ysq = st.epoch + 1, 0, 0.0, 0.0


def _bar(progress: bool, total: int, initial: int):
    return None if progress is False else bar(total, initial=initial, desc="eigenpro", unit="step", leave=False,
                                              progress=progress)
