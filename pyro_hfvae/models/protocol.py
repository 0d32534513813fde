# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The interface every ready-made model has, so that code written for one (the rate grid, the
figures, the examples) takes any of them.
"""

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch

__all__ = [
    "ModelProtocol",
]


@runtime_checkable
class ModelProtocol(Protocol):
    """
    A Pyro model of images with an amortised guide, as :class:`~pyro_hfvae.models.ConvHFVAE`,
    :class:`~pyro_hfvae.models.HierarchicalVAE`, :class:`~pyro_hfvae.models.LadderVAE` and
    :class:`~pyro_hfvae.models.VLAE` are.

    - :meth:`model` and :meth:`guide` are Pyro programs over a batch ``x`` whose sites sit in
      ``pyro.plate("data", size=dataset_size, subsample=idx)``; they take the same arguments
      (models may accept more keyword arguments, such as VLAE's ``schedule``).
    - :meth:`encode` is the point estimate of every latent site that :meth:`decode` accepts:
      a dict site name -> tensor with a leading batch dimension, holding the posterior mean
      (the class probabilities for a Concrete site; for a hierarchy of conditional
      posteriors, each layer's mean at the means of the layers above it).
    - :meth:`decode` maps such a dict to the mean of the likelihood: images in ``[0, 1]``
      (pixel probabilities for a Bernoulli likelihood), so that ``decode(encode(x))`` equals
      :meth:`reconstruct` ``(x)``.
    - :meth:`sample` decodes draws of the prior.

    ``isinstance(obj, ModelProtocol)`` checks that the methods exist, not their signatures.

    Example::

        >>> import torch
        >>> from pyro_hfvae.models import VLAE
        >>> vlae = VLAE(levels=2, latent_dim=2, image_shape=(1, 16, 16), channels=4, hidden_dim=8)
        >>> isinstance(vlae, ModelProtocol)
        True
        >>> x = torch.rand(3, 1, 16, 16)
        >>> codes = vlae.encode(x)
        >>> {site: tuple(value.shape) for site, value in codes.items()}
        {'z2': (3, 2), 'z1': (3, 2)}
        >>> torch.equal(vlae.decode(codes), vlae.reconstruct(x))
        True
    """

    def model(self, x: torch.Tensor, idx: torch.Tensor | None = None, dataset_size: int | None = None) -> None:
        """
        The generative model, observing ``x`` at site ``"x"``.

        :param torch.Tensor x: a batch of images ``(batch, channels, height, width)``.
        :param torch.Tensor idx: the batch's indices in the data set.
        :param int dataset_size: ``N``, the data plate's size (default: the batch size).
        """
        ...

    def guide(self, x: torch.Tensor, idx: torch.Tensor | None = None, dataset_size: int | None = None) -> None:
        """
        The inference model; same arguments as :meth:`model`.
        """
        ...

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        :param torch.Tensor x: a batch of images.
        :returns: a dict latent site name -> posterior mean (batch first).
        :rtype: dict
        """
        ...

    def decode(self, latents: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """
        :param dict latents: values of the latent sites, as :meth:`encode` returns them.
        :returns: the mean of the likelihood, shape ``(batch, channels, height, width)``.
        :rtype: torch.Tensor
        """
        ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param torch.Tensor x: a batch of images.
        :returns: ``decode(encode(x))``.
        :rtype: torch.Tensor
        """
        ...

    def sample(self, num_samples: int) -> torch.Tensor:
        """
        :param int num_samples: number of images.
        :returns: the mean of the likelihood at draws of the prior.
        :rtype: torch.Tensor
        """
        ...
