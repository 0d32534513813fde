# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
A Bernoulli likelihood that stays fast for confident decoders (:class:`LogitBernoulli`), and
density helpers for the objectives and the metrics: per-variable log densities (Pyro's
``Masked``/``Expanded``/``Independent`` wrappers unwrapped, masks applied), the numerically
stable Concrete log density, the Concrete in log space and a sample's exact logarithm, the
soft value of a straight-through sample, the latent sites of a trace, a distribution's mask
and its mean.
"""
from pyro_hfvae.distributions.logit_bernoulli import LogitBernoulli
from pyro_hfvae.distributions.util import (
    CONCRETE_SCORINGS,
    concrete_log_prob,
    concrete_log_value,
    distribution_mask,
    distribution_mean,
    is_batch_invariant,
    latent_sites,
    log_space_concrete,
    soft_value,
    variable_log_prob,
    variable_ndim,
)

__all__ = [
    "CONCRETE_SCORINGS",
    "LogitBernoulli",
    "concrete_log_prob",
    "concrete_log_value",
    "distribution_mask",
    "distribution_mean",
    "is_batch_invariant",
    "latent_sites",
    "log_space_concrete",
    "soft_value",
    "variable_log_prob",
    "variable_ndim",
]
