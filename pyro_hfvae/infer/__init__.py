# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Objectives and their machinery, as :mod:`pyro.infer` holds Pyro's: the HFVAE and HIT
losses (both :class:`pyro.infer.ELBO` subclasses) and :class:`JitHFVAELoss`, the HFVAE loss
with compiled kernels; their common base :class:`TermsELBO`,
named groups of latent sites (:class:`group`), the plate layout of a trace, the progressive
schedule, the bound on a correlated group's weight, and readers of a trained model's latent
space (:mod:`pyro_hfvae.infer.inspect`, :mod:`pyro_hfvae.infer.inference_data`).
"""
from pyro_hfvae.distributions.util import latent_sites
from pyro_hfvae.infer.groups import GROUP_SEPARATOR, GroupNode, build_group_tree, group, site_group, site_groups
from pyro_hfvae.infer.hfvae import HFVAELoss
from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.infer.jit import JitHFVAELoss
from pyro_hfvae.infer.plate_layout import PlateLayout
from pyro_hfvae.infer.progressive import ProgressiveSchedule
from pyro_hfvae.infer.terms_elbo import NonFiniteLossError, TermsELBO
from pyro_hfvae.infer.weight_bound import tc_weight_bound

__all__ = [
    "GROUP_SEPARATOR",
    "GroupNode",
    "HFVAELoss",
    "HITLoss",
    "JitHFVAELoss",
    "NonFiniteLossError",
    "PlateLayout",
    "ProgressiveSchedule",
    "TermsELBO",
    "build_group_tree",
    "group",
    "latent_sites",
    "site_group",
    "site_groups",
    "tc_weight_bound",
]
