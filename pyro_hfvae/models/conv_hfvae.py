# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
A VAE with a Concrete "class" group and a Normal "style" group (the HFVAE paper's image models).
"""

import math
from collections.abc import Mapping

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_hfvae.distributions.logit_bernoulli import LogitBernoulli
from pyro_hfvae.models.layers import data_plate
from pyro_hfvae.poutine.groups import group

__all__ = [
    "ConvHFVAE",
]


def _conv_encoder(in_channels: int, channels: tuple[int, ...]) -> nn.Sequential:
    layers, previous = [], in_channels
    for out in channels:
        layers += [nn.Conv2d(previous, out, 4, stride=2, padding=1), nn.ReLU()]
        previous = out
    return nn.Sequential(*layers, nn.Flatten())


def _conv_decoder(out_channels: int, channels: tuple[int, ...]) -> nn.Sequential:
    layers = []
    reversed_channels = channels[::-1]
    for current, out in zip(reversed_channels, reversed_channels[1:] + (out_channels,)):
        layers.append(nn.ConvTranspose2d(current, out, 4, stride=2, padding=1))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers[:-1])


class ConvHFVAE(nn.Module):
    r"""
    HFVAE image model: a Concrete (relaxed one-hot) latent ``y`` in group ``"class"``
    and a Normal latent ``z`` in group ``"style"``, decoded jointly by a Bernoulli
    likelihood.

    .. math::

        p(x, y, z) = \mathrm{Concrete}(y; \tfrac{1}{K}, \lambda)\, \mathcal{N}(z; 0, I)\,
            \mathrm{Bernoulli}(x; f_\theta(y, z)),\qquad
        q(y, z \mid x) = \mathrm{Concrete}(y; \pi_\phi(x), \lambda)\,
            \mathcal{N}(z; \mu_\phi(x), \sigma_\phi(x))

    With ``architecture="conv"`` (the default for 64x64 images) the encoder is four
    4x4 stride-2 convolutions and two dense layers, the decoder its mirror (the
    dSprites network of the benchmarks); ``"mlp"`` is a 400-unit MLP (the HFVAE
    paper's MNIST network). ``num_classes=0`` drops the Concrete group (a plain
    Normal VAE: beta-VAE and beta-TCVAE baselines); ``style_dim=0`` drops the
    Normal one. ``learn_class_prior=True`` learns the Concrete prior's location,
    :math:`\mathrm{Concrete}(y; \mathrm{softmax}(\eta), \lambda)` with :math:`\eta` a parameter
    starting at the uniform prior's 0, so that the model may prefer some classes. Scored by
    the argmax (``HFVAELoss(concrete_scoring="argmax")``), :math:`\log p(y)` is the categorical
    pmf of the sample's class, which passes no gradient to the networks: the learned logits fit
    the class frequencies and leave the encoder and decoder as they are under the uniform prior.

    :param tuple image_shape: ``(channels, height, width)``.
    :param int num_classes: categories of the Concrete variable ``y`` (0: none).
    :param int style_dim: dimension of the Normal variable ``z`` (0: none).
    :param float temperature: Concrete temperature :math:`\lambda`.
    :param str architecture: ``"conv"`` or ``"mlp"`` (default: conv for 64x64, else mlp).
    :param int hidden_dim: width of the dense layers.
    :param tuple channels: channels of the convolutions (conv architecture).
    :param bool learn_class_prior: learn the class prior's logits :math:`\eta` (default: uniform).

    Example::

        >>> import torch
        >>> vae = ConvHFVAE(image_shape=(1, 64, 64), num_classes=3, style_dim=10)
        >>> codes = vae.encode(torch.zeros(2, 1, 64, 64))
        >>> codes["y"].shape, codes["z"].shape
        (torch.Size([2, 3]), torch.Size([2, 10]))

    References

    [1] Structured Disentangled Representations, Babak Esmaeili et al. (AISTATS 2019)
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 64, 64),
        num_classes: int = 3,
        style_dim: int = 10,
        temperature: float = 0.66,
        architecture: str | None = None,
        hidden_dim: int = 256,
        channels: tuple[int, ...] = (32, 32, 64, 64),
        learn_class_prior: bool = False,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"expected image_shape (channels, height, width) but got {image_shape}")
        if num_classes < 0 or style_dim < 0 or num_classes + style_dim == 0:
            raise ValueError(
                f"expected num_classes >= 0 and style_dim >= 0, not both 0, but got {num_classes} and {style_dim}"
            )
        if num_classes == 1:
            raise ValueError("expected num_classes 0 or >= 2 but got 1; a one-category Concrete is constant")
        if temperature <= 0:
            raise ValueError(f"expected temperature > 0 but got {temperature}")
        if learn_class_prior and not num_classes:
            raise ValueError("expected num_classes >= 2 with learn_class_prior=True but got 0; there is no class prior")
        if architecture is None:
            architecture = "conv" if tuple(image_shape[1:]) == (64, 64) else "mlp"
        if architecture not in ("conv", "mlp"):
            raise ValueError(f"expected architecture 'conv' or 'mlp' but got {architecture!r}")
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.style_dim = style_dim
        self.architecture = architecture
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        # Only a learned prior gets a state entry, so checkpoints of uniform-prior models keep their keys.
        self.class_prior_logits = nn.Parameter(torch.zeros(num_classes)) if learn_class_prior else None
        num_pixels = math.prod(image_shape)
        latent_dim = num_classes + style_dim
        if architecture == "conv":
            side = image_shape[1] // 2 ** len(channels)
            if image_shape[1] != image_shape[2] or side * 2 ** len(channels) != image_shape[1]:
                raise ValueError(
                    f"expected square images whose side is divisible by {2 ** len(channels)} for the conv "
                    f"architecture but got {image_shape}; use architecture='mlp'"
                )
            feature_dim = channels[-1] * side * side
            self.encoder_trunk = nn.Sequential(
                _conv_encoder(image_shape[0], channels), nn.Linear(feature_dim, hidden_dim), nn.ReLU()
            )
            self.decoder = nn.Sequential(
                nn.Linear(latent_dim, hidden_dim),
                nn.ReLU(),
                nn.Linear(hidden_dim, feature_dim),
                nn.ReLU(),
                nn.Unflatten(1, (channels[-1], side, side)),
                _conv_decoder(image_shape[0], channels),
            )
        else:
            self.encoder_trunk = nn.Sequential(nn.Flatten(), nn.Linear(num_pixels, hidden_dim), nn.ReLU())
            self.decoder = nn.Sequential(
                nn.Linear(latent_dim, hidden_dim // 2),
                nn.ReLU(),
                nn.Linear(hidden_dim // 2, hidden_dim),
                nn.ReLU(),
                nn.Linear(hidden_dim, num_pixels),
                nn.Unflatten(1, tuple(image_shape)),
            )
        self.encoder_head = nn.Linear(hidden_dim, num_classes + 2 * style_dim)

    def _posterior_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.shape[1:] != self.image_shape:
            raise ValueError(
                f"expected images of shape (batch, {', '.join(map(str, self.image_shape))}) but got {tuple(x.shape)}"
            )
        h = self.encoder_head(self.encoder_trunk(x))
        logits, loc, log_scale = h.split([self.num_classes, self.style_dim, self.style_dim], dim=-1)
        return logits, loc, log_scale.clamp(-12.0, 6.0).exp()

    def posterior(self, x: torch.Tensor) -> dict[str, torch.distributions.Distribution]:
        """
        :returns: ``{"y": Concrete, "z": Normal}`` posterior distributions (batch first).
        :rtype: dict
        """
        logits, loc, scale = self._posterior_params(x)
        out = {}
        if self.num_classes:
            out["y"] = dist.RelaxedOneHotCategorical(self.temperature, logits=logits)
        if self.style_dim:
            out["z"] = dist.Normal(loc, scale).to_event(1)
        return out

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        :returns: posterior class probabilities ``"y"`` and posterior means ``"z"``.
        :rtype: dict
        """
        logits, loc, _ = self._posterior_params(x)
        out = {}
        if self.num_classes:
            out["y"] = logits.softmax(-1)
        if self.style_dim:
            out["z"] = loc
        return out

    def _logits(self, y: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
        """Bernoulli logits of shape ``batch_shape + image_shape``."""
        parts = [t for t in (y, z) if t is not None]
        latent = torch.cat(parts, -1)
        batch_shape = latent.shape[:-1]
        logits = self.decoder(latent.reshape(-1, latent.size(-1)))
        return logits.reshape(batch_shape + self.image_shape)

    def decode(self, latents: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """
        :param dict latents: ``"y"`` (a point of the simplex: class probabilities or a
            one-hot) and ``"z"``, as the model has them, with any batch shape.
        :returns: Bernoulli means (pixel probabilities) of shape ``batch_shape + image_shape``.
        :rtype: torch.Tensor
        """
        expected = [name for name, size in (("y", self.num_classes), ("z", self.style_dim)) if size]
        if sorted(latents) != expected:
            raise ValueError(
                f"expected latents for the sites {expected} but got {sorted(latents)}; pass the dict encode returns"
            )
        return self._logits(latents.get("y"), latents.get("z")).sigmoid()

    def class_prior(self) -> dist.RelaxedOneHotCategorical:
        """
        :returns: the prior of ``y``: Concrete at uniform logits, or the learned ones.
        :rtype: ~pyro.distributions.RelaxedOneHotCategorical
        """
        if self.num_classes == 0:
            raise ValueError("expected a model with num_classes >= 2 but got 0; it has no class prior")
        logits = self.class_prior_logits
        if logits is None:
            logits = self.temperature.new_zeros(self.num_classes)
        return dist.RelaxedOneHotCategorical(self.temperature, logits=logits)

    def model(self, x: torch.Tensor, idx: torch.Tensor | None = None, dataset_size: int | None = None) -> None:
        """
        The generative model: a Pyro program with latent sites ``"y"`` and ``"z"``
        and observed site ``"x"`` inside ``pyro.plate("data", size=N, subsample=idx)``.

        :param torch.Tensor x: a batch of images in [0, 1].
        :param torch.Tensor idx: their indices in the data set.
        :param int dataset_size: ``N`` (default: the batch is the data set).
        """
        pyro.module("hfvae", self)
        y = z = None
        with data_plate(x, idx, dataset_size):
            if self.num_classes:
                y = pyro.sample("y", self.class_prior())
            if self.style_dim:
                z = pyro.sample("z", dist.Normal(x.new_zeros(self.style_dim), 1.0).to_event(1))
            logits = self._logits(y, z)
            pyro.sample("x", LogitBernoulli(logits=logits, validate_args=False).to_event(3), obs=x)

    def guide(self, x: torch.Tensor, idx: torch.Tensor | None = None, dataset_size: int | None = None) -> None:
        """
        The inference network: ``y`` in group ``"class"``, ``z`` in group ``"style"``.

        :param torch.Tensor x: a batch of images in [0, 1].
        :param torch.Tensor idx: their indices in the data set.
        :param int dataset_size: ``N`` (default: the batch is the data set).
        """
        pyro.module("hfvae", self)
        posterior = self.posterior(x)
        with data_plate(x, idx, dataset_size):
            if "y" in posterior:
                with group("class"):
                    pyro.sample("y", posterior["y"])
            if "z" in posterior:
                with group("style"):
                    pyro.sample("z", posterior["z"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """
        :returns: Bernoulli means of the reconstructions at the posterior means
            (the Concrete at its class probabilities): ``decode(encode(x))``.
        :rtype: torch.Tensor
        """
        return self.decode(self.encode(x))

    def sample(self, num_samples: int) -> torch.Tensor:
        """
        :returns: Bernoulli means of images generated from the prior.
        :rtype: torch.Tensor
        """
        device = self.temperature.device
        y = z = None
        if self.num_classes:
            y = self.class_prior().sample((num_samples,))
        if self.style_dim:
            z = torch.randn(num_samples, self.style_dim, device=device)
        return self._logits(y, z).sigmoid()
