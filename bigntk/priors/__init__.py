"""Feature priors: what is known about the columns of Y.

A prior describes the n columns of an (m × n) matrix Y by feature vectors z_j (a p × n matrix Z
conceptually). Theorem 1 of the PNAS 2022 paper needs unit-norm columns, so every prior hands out
the *normalised* Gram ρ[j, j'] = z_jᵀz_j' / (‖z_j‖‖z_j'‖) block by block, never the n × n matrix.

Compactness: priors built from small group embeddings (one-hot of a label, a per-cell mean profile,
a per-drug reference profile) are :class:`FactorPrior` objects — a label per column plus a small
group Gram — and their weighted concatenations stay factorised:

    raw Gram[j, j'] = Σ_b w_b² G_b[g_b(j), g_b(j')]  (+ τ² δ_jj' for the identity nugget τ)

so a 1.3M-column CMap prior is a few int arrays and a 20k × 20k drug Gram.

The identity nugget τ reproduces the paper code's ``concatenate([Z, τ·I])`` before normalising,
without forming I: it adds τ² to the diagonal of the raw Gram and to every squared norm.
"""
from .base import GramFactor, Prior, group_means
from .concrete import (ConcatPrior, EmbeddingPrior, ExplicitPrior, FactorPrior, as_prior, concat, from_imputation,
                       one_hot)
from .images import meshgrid, prior_covariance, stationary_values, uniform

__all__ = [
    "group_means",
    "Prior",
    "GramFactor",
    "ExplicitPrior",
    "FactorPrior",
    "EmbeddingPrior",
    "ConcatPrior",
    "as_prior",
    "concat",
    "one_hot",
    "from_imputation",
    "meshgrid",
    "uniform",
    "prior_covariance",
    "stationary_values",
]
