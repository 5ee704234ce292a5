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

import copy
import time
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from scipy import stats

from ...backend import memory_budget
from ...baselines import make_baseline
from ...progress import bar as progress_bar
from ...store import PairTable
from ._impute_models import check_method
from .priors import split_prior

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
    ridge: float = 0.0
    refit: str = "auto"  # NTK: "auto" (exact fold-out when it applies), "always" (one fit per split)
    device: Optional[str] = None
    dtype: Optional[str] = None  # the refits' working precision (fold-out always computes in float64)
    memory_budget: Optional[int] = None
    solver: str = "auto"
    solver_kwargs: Dict[str, Any] = field(default_factory=dict)
    baseline_kwargs: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # per method, e.g. {"dnpp": {"center": False}}
    #: a dask.distributed Client: the NTK refits' kernel products run on its workers (not a setting of
    #: the protocol, so not in reports; fold-out runs in process)
    client: Any = field(default=None, compare=False, repr=False)

    def validate(self, method: str) -> "CVSettings":
        """One clear error for a setting the protocol cannot run with ``method``, before any computing."""
        if self.scheme not in ("kfold", "loco"):
            raise ValueError(f"unknown scheme {self.scheme!r}; use 'kfold' or 'loco'")
        lows = {"folds": 2, "rounds": 1, "min_drugs": 1, "depth": 1}
        for name, low in lows.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.refit not in ("auto", "always"):
            raise ValueError(f"refit must be 'auto' or 'always', got {self.refit!r}")
        check_method(method, self.prior, self.solver, self.solver_kwargs)
        return self


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
def _eligible_mask(table: PairTable, settings: CVSettings) -> Tuple[np.ndarray, int]:
    """(pairs kept: lines with at least ``min_drugs`` pairs and the reference line, reference code)."""
    counts = np.bincount(table.cell, minlength=len(table.cell_names))
    keep = counts[table.cell] >= settings.min_drugs
    ref = int(np.argmax(counts)) if settings.reference is None else int(settings.reference)
    if counts[ref] == 0:
        raise ValueError(f"the reference line (code {ref}) has no profiles")
    return keep | (table.cell == ref), ref


def eligible(table: PairTable, settings: CVSettings) -> Tuple[PairTable, int]:
    """Drop lines with fewer than ``min_drugs`` pairs; returns (table, reference code)."""
    keep, ref = _eligible_mask(table, settings)
    return table.subset(np.nonzero(keep)[0]), ref


def report_settings(table: PairTable, settings: CVSettings, method: str) -> Dict[str, Any]:
    """The ``settings`` record of a report: the CV settings and what they select from ``table``."""
    keep, ref = _eligible_mask(table, settings)
    record = {f.name: copy.deepcopy(getattr(settings, f.name)) for f in fields(settings) if f.name != "client"}
    return {**record, "reference": ref, "reference_name": str(table.cell_names[ref]),
            "n_pairs": int(keep.sum()), "n_lines": int(np.unique(table.cell[keep]).size), "method": method}


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
def ntk_predict(table: PairTable, train: np.ndarray, test: np.ndarray, ref: int, s: CVSettings,
                warm: Optional[np.ndarray] = None) -> np.ndarray:
    """NTK completion of the test pairs refitted on the training pairs (bigntk.complete on genes × pairs).

    ``warm`` (n_pairs, G): weights of the all-pairs fit, the iterative solver's start (:func:`all_pairs_fit`).
    """
    from ...completion import complete

    cols = np.concatenate([train, test])
    prior = split_prior(table, train, cols, ref, s)
    G = table.Y.shape[1]
    Y = np.zeros((G, cols.size), dtype=np.float32)
    Y[:, : train.size] = table.Y[train].T
    mask = np.zeros((G, cols.size), dtype=bool)
    mask[:, : train.size] = True
    init = None if warm is None else np.concatenate([warm[train], np.zeros((test.size, G), np.float32)])
    out = complete(Y, mask, prior, depth=s.depth, ridge=s.ridge, solver=s.solver, device=s.device, dtype=s.dtype,
                   memory_budget=s.memory_budget, client=s.client, dual_coef_init=init, **s.solver_kwargs)
    return np.asarray(out[:, train.size:].T, dtype=np.float32)


def iterative_regime(table: PairTable, s: CVSettings) -> bool:
    """Whether the NTK refits of this table run an iterative solver (``solvers.policy``: EigenPro above
    DIRECT_MAX training pairs with ``solver="auto"``)."""
    from ...solvers.policy import DIRECT_MAX

    return s.solver == "eigenpro" or (s.solver == "auto" and table.n_pairs > DIRECT_MAX)


def all_pairs_fit(table: PairTable, ref: int, s: CVSettings) -> np.ndarray:
    """(n_pairs, G) weights of the NTK fitted on every pair (the prior built from all of them): the warm
    start of every split's iterative refit, which then runs to the same stopping rule as a cold one."""
    from ...completion import NTKCompleter

    every = np.arange(table.n_pairs)
    est = NTKCompleter(split_prior(table, every, every, ref, s), depth=s.depth, ridge=s.ridge, solver=s.solver,
                       device=s.device, dtype=s.dtype, memory_budget=s.memory_budget, client=s.client,
                       **s.solver_kwargs)
    return est.fit(np.asarray(table.Y, np.float32).T).dual_coef_


def predict(method: str, table: PairTable, train: np.ndarray, test: np.ndarray, ref: int, s: CVSettings) -> np.ndarray:
    if method == "ntk":
        return ntk_predict(table, train, test, ref, s)
    model = make_baseline(method, **s.baseline_kwargs.get(method, {})).fit(table.Y[train], table.cell[train], table.drug[train])
    return model.predict(table.cell[test], table.drug[test])


def _predictor(method: str, table: PairTable, ref: int, s: CVSettings) -> Tuple[Callable, str]:
    """(predict(c, test, train) -> (|test|, G), mode): mode "fold-out" (NTK, exact, one factorisation;
    :mod:`.foldout`) when the prior and the memory budget allow it, else "refit" (one fit per split)."""
    from .foldout import FOLDOUT_PRIORS, FoldOut, foldout_bytes

    refit = lambda c, test, train: predict(method, table, train, test, ref, s)  # noqa: E731
    if method == "ntk" and iterative_regime(table, s):  # every refit starts from the all-pairs fit
        warm = all_pairs_fit(table, ref, s)
        return (lambda c, test, train: ntk_predict(table, train, test, ref, s, warm)), "refit (warm start)"
    if method != "ntk" or s.refit == "always":
        return refit, "refit"
    need, budget = foldout_bytes(table.n_pairs), memory_budget(s.device, s.memory_budget)
    if s.prior not in FOLDOUT_PRIORS or need > budget:
        why = (f"prior {s.prior!r} refits its baseline per fold" if s.prior not in FOLDOUT_PRIORS else
               f"it needs {need / 2**30:.1f} GiB, over the memory budget of {budget / 2**30:.1f} GiB")
        warnings.warn(f"exact fold-out CV does not apply ({why}); refitting once per split", stacklevel=3)
        return refit, "refit"
    fold = FoldOut(table, ref, s, device=s.device)
    return fold.predict, "fold-out"


# -- the protocol -----------------------------------------------------------------------------------
#: one held-out split's predictions: (round, fold), line code, predictions, truth, regime
_Split = Tuple[Tuple[int, int], int, np.ndarray, np.ndarray, str]


def _held_out(data: PairTable, ref: int, method: str, s: CVSettings, progress: bool) -> Tuple[List[_Split], str]:
    """Predict every split's test pairs; returns (splits, mode)."""
    splits = list(iter_splits(data, ref, s))
    if not splits:
        raise ValueError("no evaluation split: need a non-reference line with at least min_drugs drugs")
    predictor, mode = _predictor(method, data, ref, s)
    if mode == "fold-out":
        splits.sort(key=lambda split: split[1])  # line after line: the fold-out state is per line
    out: List[_Split] = []
    for key, c, test, train in progress_bar(len(splits), iterable=splits, desc=f"cv {method}", unit="split",
                                          progress=progress):
        n_train_c = int((data.cell[train] == c).sum())
        regime = "sparse" if (s.sparse_drugs is not None or n_train_c < s.dense_threshold) else "dense"
        out.append((key, c, predictor(c, test, train), data.Y[test], regime))
    return out, mode


def _pooled(splits: List[_Split], keep: Callable[[_Split], bool]) -> Dict[str, float]:
    chosen = [sp for sp in splits if keep(sp)]
    return profile_metrics(np.concatenate([sp[2] for sp in chosen]), np.concatenate([sp[3] for sp in chosen]))


def _metrics(splits: List[_Split], cell_names: np.ndarray) -> Dict[str, Any]:
    """Overall, per regime, per fold (round, fold) and per line (its name) metrics of the splits."""
    report: Dict[str, Any] = dict(_pooled(splits, lambda sp: True))
    report["per_regime"] = {reg: _pooled(splits, lambda sp, reg=reg: sp[4] == reg)
                            for reg in ("sparse", "dense") if any(sp[4] == reg for sp in splits)}
    report["per_fold"] = [{"round": k[0], "fold": k[1], **_pooled(splits, lambda sp, k=k: sp[0] == k)}
                          for k in sorted({sp[0] for sp in splits})]
    report["per_line"] = {str(cell_names[c]): _pooled(splits, lambda sp, c=c: sp[1] == c)
                          for c in sorted({sp[1] for sp in splits})}
    return report


def cross_validate(table: PairTable, method: str, settings: Optional[CVSettings] = None, *,
                   progress: bool = True, return_predictions: bool = False) -> Any:
    """Run the protocol for one method; returns the JSON-ready report (keys in REPORT_KEYS, and
    ``per_line``: the metrics of each evaluated line, by name).

    ``return_predictions=True`` returns ``(report, predictions)`` with ``predictions`` = {"line": (n,)
    line names, "predicted": (n, G), "measured": (n, G)} over the n held-out profiles (for figures).
    """
    s = (settings or CVSettings()).validate(method)
    if not np.isfinite(table.Y).all():
        raise ValueError("aggregated profiles contain NaN; impute or drop genes with missing values first")
    t0 = time.perf_counter()
    data, ref = eligible(table, s)
    splits, mode = _held_out(data, ref, method, s, progress)
    report: Dict[str, Any] = {"method": method if method != "ntk" else f"ntk[{s.prior}]"}
    report.update(_metrics(splits, data.cell_names))
    report["settings"] = report_settings(table, s, method)
    report["cv_mode"] = mode
    report["time_s"] = time.perf_counter() - t0
    if not return_predictions:
        return report
    line = np.concatenate([np.full(sp[2].shape[0], str(data.cell_names[sp[1]])) for sp in splits])
    return report, {"line": line, "predicted": np.concatenate([sp[2] for sp in splits]),
                    "measured": np.concatenate([sp[3] for sp in splits])}


#: settings two reports must share for their folds to be the same splits
SPLIT_KEYS = ("scheme", "folds", "rounds", "seed", "min_drugs", "sparse_drugs", "max_cells", "reference", "n_pairs")


def check_comparable(a: Dict[str, Any], b: Dict[str, Any]) -> None:
    """Refuse (``ValueError``) two ``settings`` records whose splits differ (:data:`SPLIT_KEYS`)."""
    differ = [k for k in SPLIT_KEYS if a.get(k) != b.get(k)]
    if differ:
        raise ValueError("the reports' splits differ (" + ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}"
                                                          for k in differ) + "); rerun with the same settings")


def paired_test(a: Dict[str, Any], b: Dict[str, Any], metric: str = "mean_r2") -> Dict[str, Any]:
    """Paired t-test (scipy.stats.ttest_rel) of a − b over the folds both reports share."""
    check_comparable(a.get("settings", {}), b.get("settings", {}))
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
