# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
pyro_hfvae: structured and hierarchical disentangled representation learning on Pyro.

The top level holds the objectives and what Pyro programs need to use them; it imports
no plotting or scikit-learn code. The rest lives in subpackages and modules:
:mod:`pyro_hfvae.models`, :mod:`pyro_hfvae.datasets`, :mod:`pyro_hfvae.metrics`,
:mod:`pyro_hfvae.plots`, :mod:`pyro_hfvae.trainer`, :mod:`pyro_hfvae.config`,
:mod:`pyro_hfvae.rate_grid`, :mod:`pyro_hfvae.information_flow`,
:mod:`pyro_hfvae.inference_data`, :mod:`pyro_hfvae.structure_graph`.
"""

from pyro_hfvae.group import group
from pyro_hfvae.hfvae_loss import HFVAELoss
from pyro_hfvae.hit_loss import HITLoss
from pyro_hfvae.progressive_schedule import ProgressiveSchedule
from pyro_hfvae.tc_weight_bound import tc_weight_bound
from pyro_hfvae.terms_elbo import NonFiniteLossError, TermsELBO
from pyro_hfvae.variable_log_prob import concrete_log_prob, variable_log_prob, variable_ndim

__version__ = "0.1.0"

__all__ = [
    "HFVAELoss",
    "HITLoss",
    "NonFiniteLossError",
    "ProgressiveSchedule",
    "TermsELBO",
    "concrete_log_prob",
    "group",
    "tc_weight_bound",
    "variable_log_prob",
    "variable_ndim",
]
