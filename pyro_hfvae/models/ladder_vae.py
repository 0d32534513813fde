# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The Ladder VAE: top-down inference by precision-weighted merging.
"""

import logging

import torch
from torch import nn

from pyro_hfvae.models.hierarchical_vae import HierarchicalVAE
from pyro_hfvae.models.layers import ConvEncoder, GaussianHead

logger = logging.getLogger(__name__)

__all__ = [
    "LadderVAE",
]


class LadderVAE(HierarchicalVAE):
    r"""
    The Ladder VAE of Sønderby et al. (2016): the generative model of
    :class:`HierarchicalVAE` with an inference model that merges a bottom-up and the
    top-down (prior) Gaussian of every layer by their precisions.

    A deterministic bottom-up pass :math:`d_1 = h(x)` (the conv trunk),
    :math:`d_l = f_l(d_{l-1})` gives every layer a Gaussian
    :math:`\mathcal{N}(\hat\mu_l, \hat\sigma_l^2)`. The top posterior is that Gaussian; each
    lower posterior merges it with the prior :math:`p(z_l \mid z_{l+1}) = \mathcal{N}(\mu_{p,l},
    \sigma_{p,l}^2)`, whose network it shares with the generative model:

    .. math::

        \sigma_{q,l}^{-2} = \hat\sigma_l^{-2} + \sigma_{p,l}^{-2}, \qquad
        \mu_{q,l} = \sigma_{q,l}^2
            \big(\hat\mu_l \hat\sigma_l^{-2} + \mu_{p,l} \sigma_{p,l}^{-2}\big).

    The inference model is thus of the generalised top-down form
    :math:`q(z_L \mid x) \prod_l q(z_l \mid z_{l+1}, x)`, and :class:`~pyro_hfvae.HITLoss`
    weighs each layer's rate. Arguments, sites and methods are those of
    :class:`HierarchicalVAE`.

    Example::

        >>> import torch
        >>> vae = LadderVAE((3, 32, 32), latent_dims=(4, 3, 2), likelihood="gaussian",
        ...                 channels=(4, 8), hidden_dim=16)
        >>> vae.site_names
        ('z1', 'z2', 'z3')
        >>> vae.reconstruct(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])

    References

    [1] Ladder Variational Autoencoders,
        Casper Kaae Sønderby, Tapani Raiko, Lars Maaløe, Søren Kaae Sønderby, Ole Winther
        (NeurIPS 2016)
    """

    def __init__(self, *args, name: str = "ladder_vae", **kwargs) -> None:
        super().__init__(*args, name=name, **kwargs)

    def _build_inference(self) -> None:
        dims, hidden = self.latent_dims, self.hidden_dim
        self.encoder = ConvEncoder(self.image_shape, self.channels, hidden)
        # deterministic[l - 2] maps d_{l-1} to d_l; bottom_up_heads[l - 1] reads d_l.
        self.deterministic = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU()) for _ in range(1, len(dims))
        )
        self.bottom_up_heads = nn.ModuleList(GaussianHead(hidden, hidden, d) for d in dims)

    def _bottom_up(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        features = self.encoder(x)
        gaussians = [self.bottom_up_heads[0](features)]
        for level in range(2, self.num_layers + 1):
            features = self.deterministic[level - 2](features)
            gaussians.append(self.bottom_up_heads[level - 1](features))
        return gaussians

    def _posterior(self, level, bottom_up, z_above):
        loc, scale = bottom_up[level - 1]
        if z_above is None:
            return loc, scale
        prior_loc, prior_scale = self._prior(level, z_above)
        precision, prior_precision = scale.pow(-2), prior_scale.pow(-2)
        variance = (precision + prior_precision).reciprocal()
        return (loc * precision + prior_loc * prior_precision) * variance, variance.sqrt()
