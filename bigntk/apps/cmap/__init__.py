"""CMap (L1000) virtual drug screening: ingest, generator, cross-validation.

Modules: :mod:`.ingest` (GCTX/GCT → store), :mod:`.synth` (CMap-shaped generator), :mod:`.cv` (protocol
and metrics), :mod:`.impute` (every unmeasured pair → a resumable predictions store) and :mod:`.export`
(predictions → GCTX); :mod:`.demo` is the CMap part of ``bigntk demo``. The store lives in
:mod:`bigntk.store`, the CMap priors in :mod:`bigntk.priors.cmap`, the baselines in :mod:`bigntk.baselines`.
"""
from .cv import CVSettings, cross_validate, markdown_table, paired_test, profile_metrics
from .export import export_gctx
from .impute import PredictionsExistError, impute
from .ingest import ingest
from ...priors.cmap import SparseRegimePrior, mixed_prior, one_hot_prior, sparse_regime_prior
from .synth import SynthConfig, synthesize

__all__ = ["CVSettings", "cross_validate", "markdown_table", "paired_test", "profile_metrics", "ingest",
           "impute", "PredictionsExistError", "export_gctx",
           "SparseRegimePrior", "mixed_prior", "one_hot_prior", "sparse_regime_prior", "SynthConfig", "synthesize"]
