# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Disentanglement and information metrics.

Array metrics take codes (num_samples, num_codes) and integer factors
(num_samples, num_factors); sampling metrics take a ground-truth data set and an
``encode`` callable; information metrics take the posterior itself.
"""

from pyro_hfvae.metrics.beta_vae import beta_vae_score
from pyro_hfvae.metrics.dci import FOREST_DEPTHS, dci, disentanglement_completeness, forest_dci
from pyro_hfvae.metrics.discrete_information import discrete_entropy, discrete_mutual_information
from pyro_hfvae.metrics.evaluate import METRICS, evaluate
from pyro_hfvae.metrics.explicitness import explicitness
from pyro_hfvae.metrics.factor_vae import factor_vae_score
from pyro_hfvae.metrics.information import (
    PRUNED_NATS,
    MutualInformation,
    TotalCorrelation,
    mutual_information,
    total_correlation,
)
from pyro_hfvae.metrics.mig import mig
from pyro_hfvae.metrics.mig_posterior import mig_posterior, mig_sup_posterior
from pyro_hfvae.metrics.mig_sup import mig_sup
from pyro_hfvae.metrics.modularity import modularity, modularity_from_mutual_information
from pyro_hfvae.metrics.sampling import sample_codes
from pyro_hfvae.metrics.sap import sap

__all__ = [
    "FOREST_DEPTHS",
    "METRICS",
    "PRUNED_NATS",
    "MutualInformation",
    "TotalCorrelation",
    "beta_vae_score",
    "dci",
    "discrete_entropy",
    "discrete_mutual_information",
    "disentanglement_completeness",
    "evaluate",
    "explicitness",
    "factor_vae_score",
    "forest_dci",
    "mig",
    "mig_posterior",
    "mig_sup",
    "mig_sup_posterior",
    "modularity",
    "modularity_from_mutual_information",
    "mutual_information",
    "sample_codes",
    "sap",
    "total_correlation",
]
