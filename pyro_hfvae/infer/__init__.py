# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Objectives and their machinery, as :mod:`pyro.infer` holds Pyro's: the HFVAE and HIT
losses (both :class:`pyro.infer.ELBO` subclasses) and :class:`JitHFVAELoss`, the HFVAE loss
with compiled kernels; their common base :class:`TermsELBO`, the progressive schedule, the
bound on a correlated group's weight, and readers of a trained model's latent space
(:mod:`pyro_hfvae.infer.inspect`, :mod:`pyro_hfvae.infer.inference_data`). Named groups and
the plate layout of a trace are in :mod:`pyro_hfvae.poutine`.
"""
from pyro_hfvae.infer.hfvae import HFVAELoss
from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.infer.jit import JitHFVAELoss
from pyro_hfvae.infer.progressive import ProgressiveSchedule
from pyro_hfvae.infer.terms_elbo import NonFiniteLossError, TermsELBO
from pyro_hfvae.infer.weight_bound import tc_weight_bound

__all__ = [
    "HFVAELoss",
    "HITLoss",
    "JitHFVAELoss",
    "NonFiniteLossError",
    "ProgressiveSchedule",
    "TermsELBO",
    "tc_weight_bound",
]
