# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
A hierarchical VAE for images with a generalised top-down inference model.
"""

import logging
import math
from collections.abc import Mapping, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_hfvae.distributions.logit_bernoulli import LogitBernoulli
from pyro_hfvae.models.layers import ConvEncoder, DeconvDecoder, GaussianHead, check_image_shape, data_plate

logger = logging.getLogger(__name__)

__all__ = [
    "HierarchicalVAE",
]

_LIKELIHOODS = ("bernoulli", "gaussian")


def _concat(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenates on the last dim after broadcasting the leading (batch, particle) dims."""
    lead = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(lead + t.shape[-1:]) for t in tensors], dim=-1)


class HierarchicalVAE(nn.Module):
    r"""
    A VAE with ``L`` layers of diagonal-Gaussian latents for images, with a generalised
    top-down inference model (Xiao and Bamler, 2023):

    .. math::

        p(x, z) &= p(z_L) \prod_{l<L} p(z_l \mid z_{l+1})\; p(x \mid z_1),
                   \qquad p(z_L) = \mathcal{N}(0, I), \\
        q(z \mid x) &= q(z_L \mid x) \prod_{l<L} q(z_l \mid z_{l+1}, x).

    Sample sites are named ``"z1"`` (the bottom layer, next to ``x``) to ``"zL"`` (the top)
    and ``"x"``; ``latent_dims`` lists the layer sizes **bottom first**: ``latent_dims=(32, 16)``
    gives a 32-dim ``z1`` and a 16-dim ``z2``. Every layer's rate is then separately
    weighted by :class:`~pyro_hfvae.HITLoss`.

    Networks (small by default, so that tests and CPU runs are fast): a strided-conv trunk
    gives features ``h(x)``; ``q(z_L | x)`` is an MLP of ``h``; ``q(z_l | z_{l+1}, x)`` an MLP
    of ``h`` concatenated with a linear embedding of ``z_{l+1}`` (one trunk is shared by all
    layers); ``p(z_l | z_{l+1})`` an MLP; ``p(x | z_1)`` a transposed-conv decoder giving
    Bernoulli logits (binary images) or the sigmoid mean of a Gaussian whose per-channel
    standard deviation is learned (``obs_scale=None``) or fixed. Images are
    ``(batch, channels, height, width)`` in ``[0, 1]``; height and width must be divisible by
    ``2 ** len(channels)`` (28x28 and 32x32 work with the default two stages).

    :meth:`model` and :meth:`guide` are Pyro programs with every site inside
    ``pyro.plate("data", size=N, subsample=idx)``; they register the module with
    :func:`pyro.module` under ``name``, so give models that share a param store different
    names (or train with a torch optimiser on :meth:`parameters`).

    :param image_shape: ``(channels, height, width)``.
    :param latent_dims: sizes of ``z1, ..., zL`` (bottom first).
    :param str likelihood: ``"bernoulli"`` (binary images) or ``"gaussian"``.
    :param float obs_scale: fixed standard deviation of the Gaussian likelihood; ``None``
        learns one per channel (initialised at 0.1).
    :param channels: channels of the conv stages of the encoder (the decoder mirrors them).
    :param int hidden_dim: width of the feature vectors and of the MLPs.
    :param str name: the name given to :func:`pyro.module`.

    Example::

        >>> import torch
        >>> from pyro_hfvae.infer.hit import HITLoss
        >>> vae = HierarchicalVAE((1, 28, 28), latent_dims=(4, 2), channels=(4, 8), hidden_dim=16)
        >>> x = torch.rand(3, 1, 28, 28).round()
        >>> loss = HITLoss({"z1": 1.0, "z2": 4.0}).loss(vae.model, vae.guide, x, dataset_size=100)
        >>> {k: v.shape for k, v in vae.encode(x).items()}
        {'z1': torch.Size([3, 4]), 'z2': torch.Size([3, 2])}
        >>> vae.sample(5).shape
        torch.Size([5, 1, 28, 28])

    References

    [1] Trading Information between Latents in Hierarchical Variational Autoencoders,
        Tim Z. Xiao, Robert Bamler (ICLR 2023)
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dims: Sequence[int] = (16, 8),
        *,
        likelihood: str = "bernoulli",
        obs_scale: float | None = None,
        channels: Sequence[int] = (16, 32),
        hidden_dim: int = 128,
        name: str = "hierarchical_vae",
    ) -> None:
        super().__init__()
        if not channels or any(int(c) < 1 for c in channels):
            raise ValueError(f"expected channels as a non-empty sequence of positive ints but got {channels!r}")
        self.image_shape = check_image_shape(image_shape, len(channels))
        if isinstance(latent_dims, int) or not latent_dims or any(int(d) < 1 for d in latent_dims):
            raise ValueError(
                "expected latent_dims to be a non-empty sequence of positive layer sizes, bottom "
                f"first, but got {latent_dims!r}; e.g. latent_dims=(16, 8) for a 16-dim z1 and an "
                "8-dim z2"
            )
        if likelihood not in _LIKELIHOODS:
            raise ValueError(f"expected likelihood in {_LIKELIHOODS} but got {likelihood!r}")
        if obs_scale is not None and (likelihood != "gaussian" or not obs_scale > 0):
            raise ValueError(
                "expected obs_scale=None or a positive scale with likelihood='gaussian' but got "
                f"obs_scale={obs_scale!r} with likelihood={likelihood!r}"
            )
        if hidden_dim < 1:
            raise ValueError(f"expected hidden_dim >= 1 but got {hidden_dim}")
        self.latent_dims = tuple(int(d) for d in latent_dims)
        self.channels = tuple(int(c) for c in channels)
        self.hidden_dim = int(hidden_dim)
        self.likelihood = likelihood
        self.name = name
        dims = self.latent_dims
        # prior_heads[l - 1] is p(z_l | z_{l+1}).
        self.prior_heads = nn.ModuleList(
            GaussianHead(dims[level], hidden_dim, dims[level - 1]) for level in range(1, len(dims))
        )
        self.decoder = DeconvDecoder(dims[0], self.image_shape, tuple(reversed(self.channels)))
        if likelihood == "gaussian":
            log_scale = torch.full((self.image_shape[0], 1, 1), math.log(0.1 if obs_scale is None else obs_scale))
            if obs_scale is None:
                self.log_obs_scale = nn.Parameter(log_scale)
            else:
                self.register_buffer("log_obs_scale", log_scale)
        self._build_inference()

    @property
    def num_layers(self) -> int:
        """Number of latent layers ``L``."""
        return len(self.latent_dims)

    @property
    def site_names(self) -> tuple[str, ...]:
        """Latent site names, bottom first: ``("z1", ..., "zL")``."""
        return tuple(f"z{level}" for level in range(1, self.num_layers + 1))

    # Inference networks: LadderVAE overrides these three methods.
    def _build_inference(self) -> None:
        dims, hidden = self.latent_dims, self.hidden_dim
        self.encoder = ConvEncoder(self.image_shape, self.channels, hidden)
        self.top_head = GaussianHead(hidden, hidden, dims[-1])
        # embeddings[l - 1] embeds z_{l+1}; posterior_heads[l - 1] is q(z_l | z_{l+1}, x).
        self.embeddings = nn.ModuleList(nn.Linear(dims[level], hidden) for level in range(1, len(dims)))
        self.posterior_heads = nn.ModuleList(
            GaussianHead(2 * hidden, hidden, dims[level - 1]) for level in range(1, len(dims))
        )

    def _bottom_up(self, x: torch.Tensor):
        """The deterministic pass over ``x`` that every layer's posterior reads."""
        return self.encoder(x)

    def _posterior(self, level: int, bottom_up, z_above: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Location and scale of ``q(z_level | z_{level+1}, x)`` (``z_above=None``: the top)."""
        if z_above is None:
            return self.top_head(bottom_up)
        embedding = torch.relu(self.embeddings[level - 1](z_above))
        return self.posterior_heads[level - 1](_concat(bottom_up, embedding))

    def _prior(self, level: int, z_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Location and scale of ``p(z_level | z_{level+1})``."""
        return self.prior_heads[level - 1](z_above)

    def _likelihood(self, z1: torch.Tensor) -> dist.TorchDistribution:
        out = self.decoder(z1)
        if self.likelihood == "bernoulli":
            return LogitBernoulli(logits=out, validate_args=False).to_event(3)
        return dist.Normal(torch.sigmoid(out), self.log_obs_scale.exp()).to_event(3)

    def _mean(self, z1: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z1))

    def _check_images(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            shape = ", ".join(map(str, self.image_shape))
            raise ValueError(
                f"expected images of shape (batch, {shape}) but got shape {tuple(x.shape)}; "
                f"reshape with x.reshape(-1, {shape})"
            )

    def model(self, x: torch.Tensor, idx: torch.Tensor | None = None, dataset_size: int | None = None) -> None:
        """
        The generative model :math:`p(z_L) \\prod_l p(z_l \\mid z_{l+1})\\, p(x \\mid z_1)`.

        :param torch.Tensor x: a batch of images ``(B, C, H, W)``.
        :param torch.Tensor idx: the batch's indices in the data set (needs ``dataset_size``).
        :param int dataset_size: ``N``; the plate then scales the batch by ``N/B``.
        """
        self._check_images(x)
        pyro.module(self.name, self)
        batch_size, top_dim = x.shape[0], self.latent_dims[-1]
        with data_plate(x, idx, dataset_size):
            loc, scale = x.new_zeros(batch_size, top_dim), x.new_ones(batch_size, top_dim)
            z = pyro.sample(f"z{self.num_layers}", dist.Normal(loc, scale).to_event(1))
            for level in range(self.num_layers - 1, 0, -1):
                loc, scale = self._prior(level, z)
                z = pyro.sample(f"z{level}", dist.Normal(loc, scale).to_event(1))
            pyro.sample("x", self._likelihood(z), obs=x)

    def guide(self, x: torch.Tensor, idx: torch.Tensor | None = None, dataset_size: int | None = None) -> None:
        """
        The inference model :math:`q(z_L \\mid x) \\prod_l q(z_l \\mid z_{l+1}, x)`; same
        arguments as :meth:`model`.
        """
        self._check_images(x)
        pyro.module(self.name, self)
        with data_plate(x, idx, dataset_size):
            bottom_up = self._bottom_up(x)
            z = None
            for level in range(self.num_layers, 0, -1):
                loc, scale = self._posterior(level, bottom_up, z)
                z = pyro.sample(f"z{level}", dist.Normal(loc, scale).to_event(1))

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Posterior means of every layer along the mode path: ``z_L`` is the mean of
        ``q(z_L | x)`` and each lower layer the mean of ``q(z_l | z_{l+1}, x)`` at the mean
        of the layer above.

        :param torch.Tensor x: images ``(B, C, H, W)``.
        :returns: a dict site name -> ``(B, dim)`` tensor.
        :rtype: dict
        """
        self._check_images(x)
        bottom_up = self._bottom_up(x)
        means, z = {}, None
        for level in range(self.num_layers, 0, -1):
            z, _ = self._posterior(level, bottom_up, z)
            means[f"z{level}"] = z
        return dict(sorted(means.items(), key=lambda item: int(item[0][1:])))

    def decode(self, latents: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """
        The mean of :math:`p(x \\mid z_1)`; the likelihood reads the bottom layer only, so
        the other layers' values are not used.

        :param dict latents: site name -> value, with ``"z1"`` of shape ``(B, latent_dims[0])``
            (the dict :meth:`encode` returns, or ``{"z1": z1}``).
        :returns: images ``(B, C, H, W)`` in ``[0, 1]``.
        :rtype: torch.Tensor
        """
        if "z1" not in latents:
            raise ValueError(
                f"expected a value of the bottom layer 'z1' but got the sites {sorted(latents)}; "
                "pass the dict encode returns"
            )
        return self._mean(latents["z1"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """
        The mean of :math:`p(x \\mid z_1)` at the mode-path ``z_1`` of :meth:`encode`:
        ``decode(encode(x))``.

        :param torch.Tensor x: images ``(B, C, H, W)``.
        :returns: images of the same shape, in ``[0, 1]``.
        :rtype: torch.Tensor
        """
        return self.decode(self.encode(x))

    def sample(self, num_samples: int) -> torch.Tensor:
        """
        Ancestral samples of the latents from the prior, returned as the mean of
        :math:`p(x \\mid z_1)` (pixel probabilities for the Bernoulli likelihood).

        :param int num_samples: number of images.
        :returns: images ``(num_samples, C, H, W)`` in ``[0, 1]``.
        :rtype: torch.Tensor
        """
        reference = self.decoder.linear.weight
        z = torch.randn(num_samples, self.latent_dims[-1], dtype=reference.dtype, device=reference.device)
        for level in range(self.num_layers - 1, 0, -1):
            loc, scale = self._prior(level, z)
            z = loc + scale * torch.randn_like(loc)
        return self._mean(z)
