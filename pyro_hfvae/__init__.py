# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""pyro_hfvae: structured and hierarchical disentangled representation learning on Pyro."""
from pyro_hfvae.group import group
from pyro_hfvae.hfvae_loss import HFVAELoss
from pyro_hfvae.terms_elbo import NonFiniteLossError, TermsELBO
from pyro_hfvae.variable_log_prob import concrete_log_prob, variable_log_prob, variable_ndim

__version__ = "0.1.0"

__all__ = [
    "HFVAELoss",
    "NonFiniteLossError",
    "TermsELBO",
    "concrete_log_prob",
    "group",
    "variable_log_prob",
    "variable_ndim",
]
