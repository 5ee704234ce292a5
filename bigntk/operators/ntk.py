"""Fully connected NTK operators over matrix columns (Radhakrishnan et al., PNAS 2022, Theorem 1).

K[j, j'] = κ_d(ρ_jj'), ρ the normalised prior Gram (nugget τ included on the diagonal), κ_d the NTK of
``bigntk.kernels.ntk``. Two ways to get ρ tiles:

* :class:`NTKOperator` asks the prior (``prior.gram(rows, cols)``): for an explicit prior Z (p × n)
  a tile is one GEMM of normalised columns followed by the elementwise κ.
* :class:`FactorisedNTKOperator` uses ``prior.factors()``: raw Gram[j, j'] = Σ_b w_b² G_b[g_b(j), g_b(j')]
  with small group Grams G_b (a 71 × 71 cell Gram, a 20k × 20k drug Gram …). A tile is a few gathers
  plus κ — no per-column features exist anywhere. This is the CMap-scale path (n ≈ 1.3M).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import backend
from ..kernels.ntk import check_activation, ntk, ntk_
from ..priors import ExplicitPrior, as_prior
from .base import KernelOperator

__all__ = ["NTKOperator", "FactorisedNTKOperator", "ntk_operator"]


def ntk_operator(prior: Any, **kwargs: Any) -> KernelOperator:
    """The NTK operator for a prior: :class:`FactorisedNTKOperator` when the prior is a weighted sum of
    group Grams (CMap scale, no per-column features), else :class:`NTKOperator`. ``kwargs`` as for both."""
    p = as_prior(prior)
    return FactorisedNTKOperator(p, **kwargs) if p.factors() is not None else NTKOperator(p, **kwargs)


class _Columns:
    """What a tile's columns give every row strip, gathered once per tile: the indices, their sorted
    order (to find the row that is each column) and operator data such as the columns' prior features."""

    def __init__(self, index: torch.Tensor, data: Any = None):
        self.index, self.data = index, data
        self.sorted, self.order = torch.sort(index)
        self.distinct = bool((self.sorted[1:] != self.sorted[:-1]).all())


def _unit_self(rho: torch.Tensor, rows: torch.Tensor, cols: _Columns) -> torch.Tensor:
    """ρ = 1 exactly where a row and a column are the same point (normalised columns, nugget included).

    Computed, the self-correlation comes out 1 ± a few ulps depending on the GEMM's blocking, and κ's
    infinite slope at ρ = 1 turns that into ~1e-9 differences between tiles of the same entry.
    """
    if not cols.distinct:
        same = rows[:, None] == cols.index[None, :]
        return rho.masked_fill_(same, 1.0) if bool(same.any()) else rho
    if cols.index.numel() == 0:
        return rho
    pos = torch.searchsorted(cols.sorted, rows).clamp_(max=cols.index.numel() - 1)
    hit = torch.nonzero(cols.sorted[pos] == rows).reshape(-1)
    if hit.numel():
        rho[hit, cols.order[pos[hit]]] = 1.0
    return rho


#: CPU tiles are computed in row strips of about this many entries, so that a strip of ρ and κ's
#: temporaries stay in cache and κ's dozen elementwise passes do not each stream the whole tile through
#: memory (3–4× faster at 4096², docs/benchmarks.md). A GPU takes a tile whole.
CPU_STRIP_ENTRIES = 1 << 18


class _NTKMixin:
    def _init_ntk(self, depth: int, activation: str, negative_slope: float) -> None:
        if isinstance(depth, bool) or int(depth) != depth or depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
        self.depth = int(depth)
        self.activation = activation
        self.negative_slope = check_activation(activation, negative_slope)

    def _kappa(self, rho: torch.Tensor) -> torch.Tensor:
        return ntk(rho, self.depth, "leaky_relu" if self.negative_slope else "relu", self.negative_slope)

    def _rho(self, rows: torch.Tensor, cols: _Columns) -> torch.Tensor:  # pragma: no cover
        """Float64 ρ tile, clamped to [-1, 1], exactly 1 where a row is its column."""
        raise NotImplementedError

    def _column_data(self, cols: torch.Tensor) -> Any:
        """Per-tile column data for :meth:`_rho` (default none)."""
        return None

    def _block(self, rows, cols):
        # ρ in float64 (the GEMM or gathers are cheap; κ's slope is infinite at ρ = 1), κ in place in the
        # working dtype — a float64 ρ of exactly 1 stays 1.
        cc = _Columns(cols, self._column_data(cols))
        step = rows.numel() if self.device.type != "cpu" else max(1, CPU_STRIP_ENTRIES // max(cols.numel(), 1))
        if step >= rows.numel():
            return self._kappa_strip(rows, cc)
        out = torch.empty(rows.numel(), cols.numel(), dtype=self.dtype, device=self.device)
        for i in range(0, rows.numel(), step):
            out[i : i + step] = self._kappa_strip(rows[i : i + step], cc)
        return out

    def _kappa_strip(self, rows: torch.Tensor, cols: _Columns) -> torch.Tensor:
        rho = self._rho(rows, cols).to(self.dtype)
        if torch.is_grad_enabled() and rho.requires_grad:
            return self._kappa(rho)
        return ntk_(rho, self.depth, self.negative_slope)

    def diag(self) -> torch.Tensor:
        # ρ_jj = 1 for every normalised column, so the diagonal is the constant κ_d(1) = d + 1.
        one = torch.ones(1, dtype=torch.float64, device=self.device)
        return self._kappa(one).to(self.dtype).expand(self.n).clone()


class NTKOperator(_NTKMixin, KernelOperator):
    """NTK over the ``n`` columns described by a prior (``bigntk.priors.Prior`` or a (p, n) array).

    Parameters
    ----------
    prior : Prior or array (p, n)
        Anything ``bigntk.priors.as_prior`` accepts; tiles use ``prior.gram(rows, cols)``.
    depth, activation, negative_slope : the network (see ``bigntk.kernels.ntk.ntk``).
    ρ is formed in float64 (κ has an arccos whose slope is infinite at ρ = 1) and κ is evaluated in the
    working dtype; explicit priors have their normalised columns cached on the device (one GEMM a tile).
    """

    def __init__(self, prior: Any, *, depth: int = 1, activation: str = "relu", negative_slope: float = 0.01,
                 device=None, dtype=None, memory_budget: int | None = None):
        self.prior = as_prior(prior)
        self._init_ntk(depth, activation, negative_slope)
        super().__init__(self.prior.n, device=device, dtype=dtype, memory_budget=memory_budget)
        self._zn = None
        if isinstance(self.prior, ExplicitPrior):
            # Cache the normalised columns once: a tile is then one float64 GEMM (p is small).
            sq = self.prior.sq_norms(device=self.device)
            Z = self.prior.Z.to(device=self.device, dtype=torch.float64)
            self._zn = (Z * sq.rsqrt()[None, :]).T.contiguous()  # (n, p)

    @property
    def entry_bytes(self) -> int:
        # float64 ρ (and the prior's own Gram temporaries), then κ's copies in the working dtype
        return (8 if self._zn is not None else 24) + self.tile_copies * self.itemsize

    def _column_data(self, cols):
        return None if self._zn is None else self._zn[cols].T.contiguous()  # (p, len(cols))

    def _rho(self, rows, cols):
        if self._zn is None:
            rho = self.prior.gram(rows, cols.index, device=self.device).clamp(-1.0, 1.0)
        else:
            rho = (self._zn[rows] @ cols.data).clamp_(-1.0, 1.0)
        return _unit_self(rho, rows, cols)


def _gram_of(F: torch.Tensor, dtype: torch.dtype, rows_per_block: int = 2048) -> torch.Tensor:
    """(g, g) Gram F Fᵀ of a float64 (g, k) embedding, stored in ``dtype``, computed in float64 row
    blocks (a float32 Gram never has a float64 copy of its whole size)."""
    out = torch.empty(F.shape[0], F.shape[0], dtype=dtype, device=F.device)
    for i in range(0, F.shape[0], rows_per_block):
        out[i : i + rows_per_block] = F[i : i + rows_per_block] @ F.T
    return out


class FactorisedNTKOperator(_NTKMixin, KernelOperator):
    """NTK whose prior Gram is a weighted sum of gathered group Grams (no per-column features).

    Parameters
    ----------
    factors : Prior with ``factors()`` not None, or a list of ``GramFactor`` (weight, labels (n,), and
        a (g, g) group Gram or a (g, k) group embedding).
    nugget : float
        τ; defaults to ``prior.nugget`` when a prior is given.
    gram_max_bytes : int
        An embedding factor's (g, g) Gram is formed once (tiles are then pure gathers) when it takes at
        most this many bytes: in float64, or else, for float32 tiles, in float32 (ρ is rounded to the
        working dtype before κ anyway, so a float32 Gram adds rounding of the same size); above, tiles
        are computed as F[g(rows)] F[g(cols)]ᵀ (a float64 GEMM of depth k per tile, as costly as the
        product with k outputs). Default 2 GiB: 16 000 groups in float64, 23 000 in float32.
    """

    def __init__(self, factors: Any, *, nugget: float | None = None, depth: int = 1, activation: str = "relu",
                 negative_slope: float = 0.01, device=None, dtype=None, memory_budget: int | None = None,
                 gram_max_bytes: int = 2 * 2**30):
        if hasattr(factors, "factors"):
            prior = factors
            factors = prior.factors()
            if factors is None:
                raise ValueError("this prior has an explicit per-column block; use NTKOperator instead")
            if nugget is None:
                nugget = float(getattr(prior, "nugget", 0.0))
        factors = list(factors)
        if not factors:
            raise ValueError("need at least one Gram factor")
        n = int(len(factors[0].labels))
        self._init_ntk(depth, activation, negative_slope)
        super().__init__(n, device=device, dtype=dtype, memory_budget=memory_budget)
        self.nugget = float(nugget or 0.0)
        #: per factor: labels (n,), then either ("gram", w²G (g, g)) or ("embedding", w·F (g, k)), scale
        self._labels, self._parts, self._scales = [], [], []
        sq = torch.zeros(n, dtype=torch.float64, device=self.device)
        for f in factors:
            lab = torch.as_tensor(np.asarray(f.labels), dtype=torch.int64, device=self.device)
            if lab.numel() != n:
                raise ValueError("all factors must label the same number of columns")
            part = self._factor_part(f, int(gram_max_bytes))
            s = None if getattr(f, "scale", None) is None else torch.as_tensor(
                np.asarray(f.scale), dtype=torch.float64, device=self.device)
            self._labels.append(lab)
            self._parts.append(part)
            self._scales.append(s)
            kind, M = part
            group_sq = M.diagonal() if kind == "gram" else (M * M).sum(1)
            sq += group_sq[lab] * (1.0 if s is None else s * s)
        #: squared norms of the (virtual) prior columns plus τ², i.e. the normaliser of ρ
        self._sq = sq + self.nugget**2
        if bool((self._sq <= 0).any()):
            raise ValueError("some columns have zero prior norm; add a nugget (τ > 0)")
        self._inv_norm = self._sq.rsqrt()
        #: per factor, s_b / ‖column‖ (n,): ρ = Σ_b G_b[g_b(rows), g_b(cols)] · u_b[rows] u_b[cols]
        self._unit_scales = [self._inv_norm if sc is None else sc * self._inv_norm for sc in self._scales]

    def _factor_part(self, f, gram_max_bytes: int) -> tuple[str, torch.Tensor]:
        """("gram", w²·G) or ("embedding", w·F) on the compute device, float64."""
        w = float(f.weight)
        if f.gram is not None:
            return "gram", backend.to_tensor(f.gram, device=self.device, dtype=torch.float64) * w**2
        F = backend.to_tensor(f.embedding, device=self.device, dtype=torch.float64) * w
        for dt in (torch.float64, self.dtype):
            if F.shape[0] ** 2 * (torch.finfo(dt).bits // 8) <= gram_max_bytes:
                return "gram", _gram_of(F, dt)
        return "embedding", F

    @property
    def entry_bytes(self) -> int:
        # float64 raw Gram, one gathered factor, ρ; then κ's copies in the working dtype
        return 24 + self.tile_copies * self.itemsize

    @property
    def factor_forms(self) -> list[str]:
        """Per factor, "gram" (tiles are gathers from a held (g, g) Gram) or "embedding" (a GEMM per tile)."""
        return [kind for kind, _ in self._parts]

    def _factor_tile(self, b: int, rows: torch.Tensor, col_groups: torch.Tensor) -> torch.Tensor:
        """G_b[g_b(rows), col_groups] (w_b² included; float64, or float32 from a float32 Gram)."""
        lab, (kind, M) = self._labels[b], self._parts[b]
        if kind == "embedding":
            return M.index_select(0, lab[rows]) @ M.index_select(0, col_groups).T
        if rows.numel() <= col_groups.numel():  # gather the shorter side first: the first gather is (side, g)
            # a gather along rows with one broadcast index is ~2x faster than index_select(1, ·)
            strip = M.index_select(0, lab[rows])
            return torch.gather(strip, 1, col_groups[None, :].expand(strip.shape[0], -1))
        return M.index_select(1, col_groups).index_select(0, lab[rows])

    def raw_gram(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Σ_b w_b² s_b[rows] s_b[cols] G_b[g_b(rows), g_b(cols)] (float64, no nugget)."""
        out = None
        for b, s in enumerate(self._scales):
            t = self._factor_tile(b, rows, self._labels[b][cols]).to(torch.float64)
            if s is not None:
                t = t * s[rows, None] * s[None, cols]
            out = t if out is None else out.add_(t)
        return out

    def _column_data(self, cols):
        # per factor, once per tile: the columns' groups (len(cols),) and scales u_b (1, len(cols))
        return [(lab[cols], u[cols][None, :]) for lab, u in zip(self._labels, self._unit_scales)]

    def _rho(self, rows, cols):
        # the raw Gram's scales and the normaliser as one per-factor row and column scaling: two
        # in-place passes per factor over the strip (the first also widens a float32 Gram to float64)
        rho = None
        for b, (u, (col_groups, u_cols)) in enumerate(zip(self._unit_scales, cols.data)):
            t = self._factor_tile(b, rows, col_groups)
            t = t.mul_(u_cols) if t.dtype == torch.float64 else t * u_cols
            t.mul_(u[rows, None])
            rho = t if rho is None else rho.add_(t)
        return _unit_self(rho.clamp_(-1.0, 1.0), rows, cols)
