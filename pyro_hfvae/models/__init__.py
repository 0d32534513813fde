# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Ready-made Pyro models (``model``/``guide`` pairs on :class:`torch.nn.Module`), each a
:class:`ModelProtocol`.
"""

from pyro_hfvae.models.conv_hfvae import ConvHFVAE
from pyro_hfvae.models.hierarchical_vae import HierarchicalVAE
from pyro_hfvae.models.ladder_vae import LadderVAE
from pyro_hfvae.models.protocol import ModelProtocol
from pyro_hfvae.models.semi_supervised import SemiSupervisedHFVAE
from pyro_hfvae.models.vlae import VLAE

__all__ = [
    "ConvHFVAE",
    "HierarchicalVAE",
    "LadderVAE",
    "ModelProtocol",
    "SemiSupervisedHFVAE",
    "VLAE",
]
