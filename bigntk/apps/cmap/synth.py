"""CMap-shaped synthetic data, streamed to an observation store with bounded memory.

Model (all random choices from ``numpy.random.default_rng(seed)``; G genes, k latent effect dims)::

    baseline      b_c   = μ + s_cell · u_c,                 μ, u_c ~ N(0, I_G)
    drug effect   z_d   = a_d · v_d,   v_d ~ N(0, I_k),  a_d ~ LogNormal(0, 0.5)   (potency)
    response map  W_c   = W_0 + s_spec · ΔW_c,              W_0, ΔW_c ~ N(0, I/k)  (G × k)
    profile       x     = b_c + s_drug · h(dose) · W_c z_d + s_noise · ε,    ε ~ N(0, I_G)
    h(dose)       = dose / (dose + 1 µM)  (Hill curve, doses 0.04 … 10 µM), times 6 h / 24 h

The drug effect W_0 z_d is shared across cells (what DNPP/NTK priors exploit); ΔW_c makes the
response cell-specific, and the strong baseline b_c makes the mean over a cell type a strong
baseline that a method using the drug's effect elsewhere can beat.

Availability follows the paper's Fig. 2A: cell 0 is the reference line ("MCF7") with a fraction
``ref_frac`` of all drugs; ``n_dense`` lines measure between ``dense_frac`` of the drugs; the
other lines are sparse with 10 … ``sparse_max`` drugs. Profiles are spread over the measured
(cell, drug) pairs (at least one each; the rest uniformly), in a random order, and written
chunk by chunk: memory is O(n_pairs + chunk_rows · G), never O(n_profiles · G).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ...progress import bar as progress_bar
from ...store import ObservationStore, ObservationWriter, default_chunk_rows, open_store

DOSES_UM = np.array([0.04, 0.12, 0.37, 1.11, 3.33, 10.0], dtype=np.float32)
TIMES_H = np.array([6.0, 24.0], dtype=np.float32)


@dataclass
class SynthConfig:
    """Parameters of the generator (see the module docstring for the model)."""

    profiles: int = 20_000
    cells: int = 71
    drugs: int = 20_000
    genes: int = 978
    rank: int = 10
    ref_frac: float = 0.95
    n_dense: int = 7
    dense_frac: tuple = (0.1, 0.5)
    sparse_max: int = 150
    s_cell: float = 1.0
    s_drug: float = 1.5
    s_spec: float = 0.5
    s_noise: float = 0.5
    seed: int = 0

    def validate(self) -> "SynthConfig":
        if self.cells < 2 or self.drugs < 2 or self.genes < 1 or self.rank < 1:
            raise ValueError("need cells >= 2, drugs >= 2, genes >= 1, rank >= 1")
        if self.n_dense > self.cells - 1:
            raise ValueError(f"n_dense={self.n_dense} exceeds the {self.cells - 1} non-reference lines")
        return self


def availability(cfg: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Measured (cell, drug) pairs as two int32 arrays sorted by (cell, drug)."""
    D = cfg.drugs
    counts = np.empty(cfg.cells, dtype=np.int64)
    counts[0] = max(1, int(round(cfg.ref_frac * D)))
    lo, hi = cfg.dense_frac
    counts[1:1 + cfg.n_dense] = np.maximum(1, (rng.uniform(lo, hi, cfg.n_dense) * D).astype(int))
    n_sparse = cfg.cells - 1 - cfg.n_dense
    counts[1 + cfg.n_dense:] = rng.integers(min(10, D), min(cfg.sparse_max, D) + 1, n_sparse)
    popularity = rng.dirichlet(np.full(D, 0.5))  # some drugs are measured in many lines
    cells, drugs = [], []
    for c, k in enumerate(counts):
        d = np.sort(rng.choice(D, size=int(k), replace=False, p=popularity if c else None))
        cells.append(np.full(d.size, c, np.int32))
        drugs.append(d.astype(np.int32))
    return np.concatenate(cells), np.concatenate(drugs)


class _Model:
    """Parameters of the generative model (O(C·G·k + D·k) memory)."""

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator) -> None:
        G, k = cfg.genes, cfg.rank
        mu = rng.standard_normal(G)
        self.baseline = (mu + cfg.s_cell * rng.standard_normal((cfg.cells, G))).astype(np.float32)
        self.effect = (rng.lognormal(0.0, 0.5, cfg.drugs)[:, None] * rng.standard_normal((cfg.drugs, k))).astype(np.float32)
        W0 = rng.standard_normal((G, k)) / np.sqrt(k)
        self.W = (W0[None] + cfg.s_spec * rng.standard_normal((cfg.cells, G, k)) / np.sqrt(k)).astype(np.float32)
        self.cfg = cfg

    def profiles(self, cell: np.ndarray, drug: np.ndarray, dose: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.cfg
        X = self.baseline[cell].copy()
        h = (dose / (dose + 1.0)).astype(np.float32)
        for c in np.unique(cell):
            r = np.nonzero(cell == c)[0]
            X[r] += cfg.s_drug * h[r, None] * (self.effect[drug[r]] @ self.W[c].T)
        X += cfg.s_noise * rng.standard_normal(X.shape, dtype=np.float32)
        return X


def synthesize(store: str | Path, cfg: Optional[SynthConfig] = None, *, chunk_rows: Optional[int] = None,
               overwrite: bool = False, progress: bool = True, **kwargs) -> ObservationStore:
    """Generate ``cfg.profiles`` CMap-shaped profiles into a new store (kwargs override cfg fields)."""
    cfg = (cfg or SynthConfig())
    cfg = SynthConfig(**{**asdict(cfg), **kwargs}).validate()
    rng = np.random.default_rng(cfg.seed)
    pair_cell, pair_drug = availability(cfg, rng)
    n_pairs = pair_cell.size
    if cfg.profiles < n_pairs:
        raise ValueError(f"{cfg.profiles} profiles cannot cover the {n_pairs} measured pairs; "
                         f"raise --profiles or lower --drugs")
    model = _Model(cfg, rng)
    extra = rng.integers(0, n_pairs, cfg.profiles - n_pairs)
    pair_of_profile = np.concatenate([np.arange(n_pairs), extra])
    rng.shuffle(pair_of_profile)  # O(n_profiles) ints: 5 MB at 1.3M
    rows = int(chunk_rows or default_chunk_rows(cfg.genes))
    prov = {"generator": "bigntk.apps.cmap.synth", "config": {k: (list(v) if isinstance(v, tuple) else v)
                                                              for k, v in asdict(cfg).items()},
            "reference_cell": "cell000"}
    w = ObservationWriter.create(store, [f"g{i:04d}" for i in range(cfg.genes)],
                                 cell_names=[f"cell{i:03d}" for i in range(cfg.cells)],
                                 drug_names=[f"drug{i:05d}" for i in range(cfg.drugs)],
                                 chunk_rows=rows, provenance=prov, overwrite=overwrite)
    with w, progress_bar(cfg.profiles, desc="synth", unit="prof", progress=progress) as bar:
        for s in range(0, cfg.profiles, rows):
            p = pair_of_profile[s:s + rows]
            crng = np.random.default_rng([cfg.seed, s])  # per-chunk stream: reproducible, restartable
            cell, drug = pair_cell[p], pair_drug[p]
            dose = DOSES_UM[crng.integers(0, DOSES_UM.size, p.size)]
            time = TIMES_H[crng.integers(0, TIMES_H.size, p.size)]
            X = model.profiles(cell, drug, dose, crng)
            w.append(X, cell, drug, dose=dose, time=time)
            bar.update(p.size)
    return open_store(store)
