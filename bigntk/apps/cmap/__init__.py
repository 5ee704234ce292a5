"""CMap (L1000) virtual drug screening: ingest, generator, priors, cross-validation.

Modules: :mod:`.ingest` (GCTX/GCT → store), :mod:`.synth` (CMap-shaped generator),
:mod:`.priors` (one-hot, sparse-regime and mixed priors), :mod:`.cv` (protocol and metrics).
The store lives in :mod:`bigntk.store`, the baselines in :mod:`bigntk.baselines`.
"""
from .cv import CVSettings, cross_validate, markdown_table, paired_test, profile_metrics
from .ingest import ingest
from .priors import SparseRegimePrior, mixed_prior, one_hot_prior, sparse_regime_prior
from .synth import SynthConfig, synthesize

__all__ = ["CVSettings", "cross_validate", "markdown_table", "paired_test", "profile_metrics", "ingest",
           "SparseRegimePrior", "mixed_prior", "one_hot_prior", "sparse_regime_prior", "SynthConfig", "synthesize"]
