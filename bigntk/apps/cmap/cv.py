"""Cross-validation protocol for CMap completion, metrics and paired comparisons.

Protocol (``scheme="kfold"``): lines with fewer than ``min_drugs`` drugs are dropped; for each
round r and each non-reference line c, c's drugs are split into ``folds`` folds (seeded by
(seed, r, c)); fold f of c is hidden and predicted from every other pair (the reference line is
training-only). ``sparse_drugs=N`` keeps only N random training drugs of line c (sparse regime).
``scheme="loco"`` (small data such as the 3-drug Level-5 file): for each drug, each of its lines
is left out in turn.

Metrics over the test profiles: Pearson r pooled over all entries, mean / median per-profile R²
over genes, mean per-profile cosine similarity; overall, per regime (``sparse``: line with fewer
than ``dense_threshold`` training drugs, else ``dense``) and per fold (round, fold — pooled over
lines — so two methods evaluated with the same settings are paired fold by fold).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from ...baselines import make_baseline
from ...store import PairTable

REPORT_KEYS = ("method", "pearson_r", "mean_r2", "mean_cosine", "n_test_profiles", "per_regime", "per_fold",
               "settings", "time_s")


@dataclass
class CVSettings:
    scheme: str = "kfold"
    folds: int = 10
    rounds: int = 5
    seed: int = 0
    min_drugs: int = 10
    sparse_drugs: Optional[int] = None
    dense_threshold: int = 150
    reference: Optional[int] = None  # cell code; default: the line with most drugs
    max_cells: Optional[int] = None  # evaluate only the first N eligible lines (for quick runs)
    prior: str = "sparse"
    depth: int = 1
    nugget: float = 1.5
    w: float = 0.75
    solver: str = "auto"
    solver_kwargs: Dict[str, Any] = field(default_factory=dict)
    baseline_kwargs: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # per method, e.g. {"dnpp": {"center": False}}


# -- metrics ----------------------------------------------------------------------------------------
def profile_metrics(P: np.ndarray, Y: np.ndarray) -> Dict[str, float]:
    """Metrics of predictions P against truth Y, both (n_profiles, G)."""
    P, Y = np.asarray(P, np.float64), np.asarray(Y, np.float64)
    if P.shape != Y.shape:
        raise ValueError(f"prediction shape {P.shape} != truth shape {Y.shape}")
    if not P.size:
        return {"pearson_r": float("nan"), "mean_r2": float("nan"), "median_r2": float("nan"),
                "mean_cosine": float("nan"), "n_test_profiles": 0}
    r = np.corrcoef(P.ravel(), Y.ravel())[0, 1] if P.size > 1 else float("nan")
    ss_res = ((Y - P) ** 2).sum(1)
    ss_tot = ((Y - Y.mean(1, keepdims=True)) ** 2).sum(1)
    r2 = 1 - ss_res / np.where(ss_tot > 0, ss_tot, np.nan)
    cos = (P * Y).sum(1) / np.maximum(np.linalg.norm(P, axis=1) * np.linalg.norm(Y, axis=1), 1e-300)
    return {"pearson_r": float(r), "mean_r2": float(np.nanmean(r2)), "median_r2": float(np.nanmedian(r2)),
            "mean_cosine": float(cos.mean()), "n_test_profiles": int(P.shape[0])}


# -- splits -----------------------------------------------------------------------------------------
def eligible(table: PairTable, settings: CVSettings) -> Tuple[PairTable, int]:
    """Drop lines with fewer than ``min_drugs`` pairs; returns (table, reference code)."""
    counts = np.bincount(table.cell, minlength=len(table.cell_names))
    keep = counts[table.cell] >= settings.min_drugs
    ref = int(np.argmax(counts)) if settings.reference is None else int(settings.reference)
    if counts[ref] == 0:
        raise ValueError(f"the reference line (code {ref}) has no profiles")
    keep |= table.cell == ref
    return table.subset(np.nonzero(keep)[0]), ref


def iter_splits(table: PairTable, ref: int, s: CVSettings) -> Iterator[Tuple[Tuple[int, int], int, np.ndarray, np.ndarray]]:
    """Yield ((round, fold), cell, test_idx, train_idx)."""
    n = table.n_pairs
    if s.scheme == "loco":
        for d in np.unique(table.drug):
            for c in np.unique(table.cell[table.drug == d]):
                if c == ref:
                    continue
                test = np.nonzero((table.cell == c) & (table.drug == d))[0]
                train = np.setdiff1d(np.arange(n), test)
                yield (0, int(d)), int(c), test, _sparsify(table, train, c, s, (s.seed, int(d), int(c)))
        return
    if s.scheme != "kfold":
        raise ValueError(f"unknown scheme {s.scheme!r}; use 'kfold' or 'loco'")
    cells = [c for c in np.unique(table.cell) if c != ref][: s.max_cells]
    for r in range(s.rounds):
        for c in cells:
            idx = np.nonzero(table.cell == c)[0]
            perm = np.random.default_rng([s.seed, r, int(c)]).permutation(idx)
            k = min(s.folds, idx.size)
            for f, test in enumerate(np.array_split(perm, k)):
                train = np.setdiff1d(np.arange(n), test)
                yield (r, f), int(c), np.sort(test), _sparsify(table, train, c, s, (s.seed, r, int(c), f))


def _sparsify(table: PairTable, train: np.ndarray, c: int, s: CVSettings, seed) -> np.ndarray:
    if s.sparse_drugs is None:
        return train
    own = train[table.cell[train] == c]
    if own.size <= s.sparse_drugs:
        return train
    keep = np.random.default_rng(list(seed)).choice(own, s.sparse_drugs, replace=False)
    return np.sort(np.concatenate([train[table.cell[train] != c], keep]))


# -- methods ----------------------------------------------------------------------------------------
def ntk_predict(table: PairTable, train: np.ndarray, test: np.ndarray, ref: int, s: CVSettings) -> np.ndarray:
    """NTK completion of the test columns with the chosen prior (bigntk.complete on genes × pairs)."""
    from ...completion import complete
    from ...priors.cmap import mixed_prior, one_hot_prior, sparse_regime_prior

    cols = np.concatenate([train, test])
    cell, drug = table.cell[cols], table.drug[cols]
    Ytr = table.Y[train]
    n_cells, n_drugs = len(table.cell_names), len(table.drug_names)
    if s.prior == "onehot":
        prior = one_hot_prior(cell, drug, "both", nugget=s.nugget)
    else:
        prior = sparse_regime_prior(Ytr, table.cell[train], table.drug[train], cell, drug, reference=ref,
                                    n_cells=n_cells, n_drugs=n_drugs, w=s.w, nugget=s.nugget)
        if s.prior.startswith("mixed-"):
            name = s.prior.split("-", 1)[1]
            kw = s.baseline_kwargs.get(name, {})
            base = make_baseline(name, **kw).fit(Ytr, table.cell[train], table.drug[train])
            imp = np.concatenate([Ytr, base.predict(table.cell[test], table.drug[test])]).T
            prior = mixed_prior(imp, prior, nugget=s.nugget)
        elif s.prior != "sparse":
            raise ValueError(f"unknown prior {s.prior!r}; use sparse, onehot, mixed-dnpp or mixed-falrtc")
    G = table.Y.shape[1]
    Y = np.zeros((G, cols.size), dtype=np.float32)
    Y[:, : train.size] = Ytr.T
    mask = np.zeros((G, cols.size), dtype=bool)
    mask[:, : train.size] = True
    out = complete(Y, mask, prior, depth=s.depth, solver=s.solver, **s.solver_kwargs)
    return np.asarray(out[:, train.size:].T, dtype=np.float32)


def predict(method: str, table: PairTable, train: np.ndarray, test: np.ndarray, ref: int, s: CVSettings) -> np.ndarray:
    if method == "ntk":
        return ntk_predict(table, train, test, ref, s)
    model = make_baseline(method, **s.baseline_kwargs.get(method, {})).fit(table.Y[train], table.cell[train], table.drug[train])
    return model.predict(table.cell[test], table.drug[test])


# -- the protocol -----------------------------------------------------------------------------------
def cross_validate(table: PairTable, method: str, settings: Optional[CVSettings] = None, *,
                   progress: bool = True) -> Dict[str, Any]:
    """Run the protocol for one method; returns the JSON-ready report (keys in REPORT_KEYS)."""
    s = settings or CVSettings()
    if not np.isfinite(table.Y).all():
        raise ValueError("aggregated profiles contain NaN; impute or drop genes with missing values first")
    t0 = time.perf_counter()
    data, ref = eligible(table, s)
    n_cell_drugs = np.bincount(data.cell, minlength=len(data.cell_names))
    preds: Dict[Tuple[int, int], List[Tuple[np.ndarray, np.ndarray, str]]] = {}
    splits = list(iter_splits(data, ref, s))
    if not splits:
        raise ValueError("no evaluation split: need a non-reference line with at least min_drugs drugs")
    for key, c, test, train in tqdm(splits, disable=not progress, desc=f"cv {method}"):
        n_train_c = int((data.cell[train] == c).sum())
        regime = "sparse" if (s.sparse_drugs is not None or n_train_c < s.dense_threshold) else "dense"
        P = predict(method, data, train, test, ref, s)
        preds.setdefault(key, []).append((P, data.Y[test], regime))
    all_P = np.concatenate([p for v in preds.values() for p, _, _ in v])
    all_Y = np.concatenate([y for v in preds.values() for _, y, _ in v])
    report: Dict[str, Any] = {"method": method if method != "ntk" else f"ntk[{s.prior}]"}
    report.update(profile_metrics(all_P, all_Y))
    per_regime = {}
    for reg in ("sparse", "dense"):
        Ps = [p for v in preds.values() for p, _, g in v if g == reg]
        if Ps:
            Ys = [y for v in preds.values() for _, y, g in v if g == reg]
            per_regime[reg] = profile_metrics(np.concatenate(Ps), np.concatenate(Ys))
    report["per_regime"] = per_regime
    report["per_fold"] = [{"round": k[0], "fold": k[1], **profile_metrics(np.concatenate([p for p, _, _ in v]),
                                                                          np.concatenate([y for _, y, _ in v]))}
                          for k, v in sorted(preds.items())]
    st = asdict(s)
    st.update(reference=ref, reference_name=str(data.cell_names[ref]), n_pairs=int(data.n_pairs),
              n_lines=int((n_cell_drugs > 0).sum()), method=method)
    report["settings"] = st
    report["time_s"] = time.perf_counter() - t0
    return report


def paired_test(a: Dict[str, Any], b: Dict[str, Any], metric: str = "mean_r2") -> Dict[str, Any]:
    """Paired t-test (scipy.stats.ttest_rel) of a − b over the folds both reports share."""
    fa = {(f["round"], f["fold"]): f[metric] for f in a["per_fold"]}
    fb = {(f["round"], f["fold"]): f[metric] for f in b["per_fold"]}
    keys = sorted(k for k in fa.keys() & fb.keys() if np.isfinite(fa[k]) and np.isfinite(fb[k]))
    if len(keys) < 2:
        raise ValueError("need at least two shared folds for a paired test (same settings and seed)")
    x, y = np.array([fa[k] for k in keys]), np.array([fb[k] for k in keys])
    t = stats.ttest_rel(x, y)
    return {"metric": metric, "a": a["method"], "b": b["method"], "n_folds": len(keys),
            "mean_diff": float((x - y).mean()), "t": float(t.statistic), "p_value": float(t.pvalue)}


def markdown_table(reports: List[Dict[str, Any]], comparisons: Optional[List[Dict[str, Any]]] = None) -> str:
    """Markdown table of reports (overall and per regime) and optional paired tests."""
    lines = ["| method | regime | n test | Pearson r | mean R² | median R² | mean cosine |",
             "|---|---|---|---|---|---|---|"]
    for r in reports:
        rows = [("all", r)] + [(k, v) for k, v in r["per_regime"].items()]
        for name, m in rows:
            lines.append(f"| {r['method']} | {name} | {m['n_test_profiles']} | {m['pearson_r']:.4f} | "
                         f"{m['mean_r2']:.4f} | {m['median_r2']:.4f} | {m['mean_cosine']:.4f} |")
    if comparisons:
        lines += ["", "| a | b | metric | folds | mean diff | t | p |", "|---|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {c['a']} | {c['b']} | {c['metric']} | {c['n_folds']} | {c['mean_diff']:+.4f} | "
                         f"{c['t']:.2f} | {c['p_value']:.2g} |")
    return "\n".join(lines)
