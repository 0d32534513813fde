# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The semi-supervised HFVAE of the HFVAE paper's MNIST experiments: a Concrete class group
observed for the labelled data points, a Normal style group conditioned on the class.
"""

import logging
import math
import random
from collections.abc import Mapping

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from pyro_hfvae.distributions.logit_bernoulli import LogitBernoulli
from pyro_hfvae.models.layers import data_plate
from pyro_hfvae.poutine.groups import group

logger = logging.getLogger(__name__)

__all__ = [
    "SemiSupervisedHFVAE",
]


class SemiSupervisedHFVAE(nn.Module):
    r"""
    A VAE with a Concrete class ``y`` (group ``"class"``) and a Normal style ``z`` (group
    ``"style"``) whose class is observed for the labelled data points:

    .. math::

        p(x, y, z) = \mathrm{Concrete}(y; \tfrac{1}{K}, \lambda)\, \mathcal{N}(z; 0, I)\,
            \mathrm{Bernoulli}(x; f_\theta(y, z)),\qquad
        q(y, z \mid x) = \mathrm{Concrete}(y; \pi_\phi(x), \lambda)\,
            \mathcal{N}(z; \mu_\phi(x, y), \sigma_\phi(x, y)).

    Given ``labels`` and a ``label_mask``, :meth:`model` samples ``y`` with ``obs=`` the
    one-hot labels and ``obs_mask=label_mask`` (Pyro splits it into an observed
    ``y_observed`` and a latent ``y_unobserved``) and :meth:`guide` samples
    ``y_unobserved`` under ``poutine.mask(mask=~label_mask)``, conditioning the style on
    the label where there is one; train with
    ``HFVAELoss(..., supervised_weight=w)`` to add the classifier term
    :math:`w \log q(y = \text{label} \mid x)` (see :class:`~pyro_hfvae.HFVAELoss`). Without
    labels both are the unsupervised model with a latent ``y``.

    The network is probtorch's semi-supervised MNIST network: an encoder
    ``pixels -> hidden_dim`` (ReLU), class logits ``hidden_dim -> num_classes``, style
    ``(hidden_dim + num_classes) -> style_hidden_dim -> 2 style_dim`` (mean and log-std),
    decoder ``(num_classes + style_dim) -> style_hidden_dim -> hidden_dim -> pixels``.

    ``label_fraction`` is the fraction of labelled data, counted in one of two units:

    - ``label_unit="batch"`` (the reference's scheme): whole batches are labelled;
      :meth:`labelled_batch` says, for each position of a batch in the epoch and a seed, whether
      it is labelled (the same positions every epoch). With batches reshuffled every epoch the
      labelled *images* change from epoch to epoch, so a long run sees the labels of almost every
      image: it is not a fixed 10 % labelled set.
    - ``label_unit="item"``: a fixed random subset of ``label_fraction`` of the training items
      is labelled for the whole run (:meth:`labelled_items`), and batches mix labelled and
      unlabelled items (``obs_mask=``): the usual semi-supervised protocol.

    :param tuple image_shape: ``(channels, height, width)``.
    :param int num_classes: categories of the Concrete ``y``.
    :param int style_dim: dimension of the Normal ``z``.
    :param float temperature: Concrete temperature :math:`\lambda`.
    :param int hidden_dim: width of the encoder and of the decoder's last layer.
    :param int style_hidden_dim: width of the style head and of the decoder's first layer.
    :param float label_fraction: fraction of labelled data, in ``[0, 1]``.
    :param str label_unit: ``"batch"`` or ``"item"``, what ``label_fraction`` counts (see above).

    Example::

        >>> import torch
        >>> from pyro_hfvae import HFVAELoss
        >>> vae = SemiSupervisedHFVAE(image_shape=(1, 8, 8), hidden_dim=16, style_hidden_dim=8)
        >>> x, labels = torch.rand(4, 1, 8, 8).round(), torch.tensor([3, 1, 4, 1])
        >>> loss = HFVAELoss(gamma=4.0, supervised_weight=0.1)
        >>> mask = torch.tensor([True, True, False, False])
        >>> value = loss.loss(vae.model, vae.guide, x, torch.arange(4), 100, labels, mask)
        >>> loss.terms["supervised"] < 0
        True

    References

    [1] Structured Disentangled Representations, Babak Esmaeili et al. (AISTATS 2019)
    [2] Learning Disentangled Representations with Semi-Supervised Deep Generative Models,
    N. Siddharth, Brooks Paige, Jan-Willem van de Meent, et al. (NeurIPS 2017)
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        style_dim: int = 10,
        temperature: float = 0.66,
        hidden_dim: int = 400,
        style_hidden_dim: int = 200,
        label_fraction: float = 1.0,
        label_unit: str = "batch",
    ) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"expected image_shape (channels, height, width) but got {image_shape}")
        if num_classes < 2 or style_dim < 1:
            raise ValueError(f"expected num_classes >= 2 and style_dim >= 1 but got {num_classes} and {style_dim}")
        if temperature <= 0:
            raise ValueError(f"expected temperature > 0 but got {temperature}")
        if not 0.0 <= label_fraction <= 1.0:
            raise ValueError(f"expected label_fraction in [0, 1] but got {label_fraction}")
        if label_unit not in ("batch", "item"):
            raise ValueError(f"expected label_unit 'batch' or 'item' but got {label_unit!r}")
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.style_dim = style_dim
        self.label_fraction = float(label_fraction)
        self.label_unit = label_unit
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        num_pixels = math.prod(image_shape)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(num_pixels, hidden_dim), nn.ReLU())
        self.class_head = nn.Linear(hidden_dim, num_classes)
        self.style_head = nn.Sequential(
            nn.Linear(hidden_dim + num_classes, style_hidden_dim), nn.ReLU(), nn.Linear(style_hidden_dim, 2 * style_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(num_classes + style_dim, style_hidden_dim),
            nn.ReLU(),
            nn.Linear(style_hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, num_pixels),
        )

    def labelled_batch(self, position: int, seed: int = 0) -> bool:
        """
        Whether the batch at ``position`` in every epoch of a run with ``seed`` is labelled:
        a seeded draw with probability :attr:`label_fraction`, the same for every epoch.

        :param int position: the batch's position in the epoch (0, 1, ...).
        :param int seed: the run's seed.
        :rtype: bool

        Example::

            >>> vae = SemiSupervisedHFVAE(image_shape=(1, 8, 8), label_fraction=0.25)
            >>> sum(vae.labelled_batch(b, seed=0) for b in range(1000))
            240
        """
        if self.label_fraction >= 1.0:
            return True
        return random.Random(f"{seed}:{position}").random() < self.label_fraction

    def labelled_items(self, num_items: int, seed: int = 0) -> torch.Tensor:
        """
        Which of ``num_items`` training items have known labels for a whole run with ``seed``
        (``label_unit="item"``): exactly ``round(label_fraction * num_items)`` of them, chosen
        uniformly at random.

        :param int num_items: the number of training items.
        :param int seed: the run's seed.
        :returns: a bool tensor of shape ``(num_items,)``.
        :rtype: torch.Tensor

        Example::

            >>> vae = SemiSupervisedHFVAE(image_shape=(1, 8, 8), label_fraction=0.1, label_unit="item")
            >>> int(vae.labelled_items(1000, seed=0).sum())
            100
        """
        count = round(self.label_fraction * num_items)
        # A stream of its own: a torch generator seeded with the run's seed would draw the first epoch's batch
        # order, and the first batches would then hold only labelled items.
        chosen = random.Random(f"labelled items {seed}").sample(range(num_items), count)
        return torch.zeros(num_items, dtype=torch.bool).index_fill_(0, torch.tensor(chosen, dtype=torch.long), True)

    def _check(self, x: torch.Tensor, labels: torch.Tensor | None, label_mask: torch.Tensor | None):
        if x.shape[1:] != self.image_shape:
            raise ValueError(
                f"expected images of shape (batch, {', '.join(map(str, self.image_shape))}) but got {tuple(x.shape)}"
            )
        if labels is None:
            if label_mask is not None:
                raise ValueError("expected labels with label_mask but got labels=None; pass the batch's labels")
            return None, None
        if labels.shape != x.shape[:1] or labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"expected integer labels of shape ({len(x)},) but got {labels.dtype} of shape {tuple(labels.shape)}"
            )
        if label_mask is None:
            label_mask = torch.ones(len(x), dtype=torch.bool, device=x.device)
        elif label_mask.shape != labels.shape or label_mask.dtype != torch.bool:
            raise ValueError(
                f"expected a bool label_mask of shape ({len(x)},) but got {label_mask.dtype} of shape "
                f"{tuple(label_mask.shape)}"
            )
        return F.one_hot(labels.long(), self.num_classes).to(x.dtype), label_mask

    def _style(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = h.expand(y.shape[:-1] + h.shape[-1:])
        loc, log_scale = self.style_head(torch.cat([h, y], -1)).split(self.style_dim, -1)
        return loc, log_scale.clamp(-12.0, 6.0).exp()

    def _logits(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        latent = torch.cat([y, z], -1)
        logits = self.decoder(latent.reshape(-1, latent.size(-1)))
        return logits.reshape(latent.shape[:-1] + self.image_shape)

    def model(
        self,
        x: torch.Tensor,
        idx: torch.Tensor | None = None,
        dataset_size: int | None = None,
        labels: torch.Tensor | None = None,
        label_mask: torch.Tensor | None = None,
    ) -> None:
        """
        The generative model: ``y`` (observed where ``label_mask``), ``z`` and the
        observed ``x`` inside ``pyro.plate("data", size=N, subsample=idx)``.

        :param torch.Tensor x: a batch of images in [0, 1].
        :param torch.Tensor idx: their indices in the data set.
        :param int dataset_size: ``N`` (default: the batch is the data set).
        :param torch.Tensor labels: their integer classes (``None``: unsupervised).
        :param torch.Tensor label_mask: which labels are known (default: all of them).
        """
        pyro.module("ss_hfvae", self)
        onehot, label_mask = self._check(x, labels, label_mask)
        with data_plate(x, idx, dataset_size):
            prior = dist.RelaxedOneHotCategorical(self.temperature, logits=x.new_zeros(self.num_classes))
            if onehot is None:
                y = pyro.sample("y", prior)
            else:
                y = pyro.sample("y", prior, obs=onehot, obs_mask=label_mask)
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.style_dim), 1.0).to_event(1))
            logits = self._logits(y, z)
            pyro.sample("x", LogitBernoulli(logits=logits, validate_args=False).to_event(3), obs=x)

    def guide(
        self,
        x: torch.Tensor,
        idx: torch.Tensor | None = None,
        dataset_size: int | None = None,
        labels: torch.Tensor | None = None,
        label_mask: torch.Tensor | None = None,
    ) -> None:
        """
        The inference network: ``y`` (``y_unobserved`` given labels) in group ``"class"``,
        ``z`` given ``x`` and ``y`` (the label where known) in group ``"style"``.

        :param torch.Tensor x: a batch of images in [0, 1].
        :param torch.Tensor idx: their indices in the data set.
        :param int dataset_size: ``N`` (default: the batch is the data set).
        :param torch.Tensor labels: their integer classes (``None``: unsupervised).
        :param torch.Tensor label_mask: which labels are known (default: all of them).
        """
        pyro.module("ss_hfvae", self)
        onehot, label_mask = self._check(x, labels, label_mask)
        h = self.encoder(x)
        posterior = dist.RelaxedOneHotCategorical(self.temperature, logits=self.class_head(h))
        with data_plate(x, idx, dataset_size):
            with group("class"):
                if onehot is None:
                    y = pyro.sample("y", posterior)
                else:
                    with poutine.mask(mask=~label_mask):
                        y = pyro.sample("y_unobserved", posterior)
                    y = torch.where(label_mask[:, None], onehot, y)
            loc, scale = self._style(h, y)
            with group("style"):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def posterior(self, x: torch.Tensor) -> dict[str, torch.distributions.Distribution]:
        r"""
        The guide's distributions at the point estimate of the class: the Concrete
        :math:`q(y \mid x)` and the style's Normal :math:`q(z \mid x, \bar y)` at the class
        probabilities :math:`\bar y` (what :meth:`encode` uses). The style's exact posterior,
        :math:`\int q(z \mid x, y)\, q(y \mid x)\, dy`, is a mixture; this one component stands
        in for it where a factorised posterior is needed (the information metrics).

        :returns: ``{"y": Concrete, "z": Normal}`` (batch first).
        :rtype: dict
        """
        self._check(x, None, None)
        h = self.encoder(x)
        logits = self.class_head(h)
        loc, scale = self._style(h, logits.softmax(-1))
        return {
            "y": dist.RelaxedOneHotCategorical(self.temperature, logits=logits),
            "z": dist.Normal(loc, scale).to_event(1),
        }

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        :returns: the class probabilities ``"y"`` and the style mean ``"z"`` at them.
        :rtype: dict
        """
        posterior = self.posterior(x)
        return {"y": posterior["y"].probs, "z": posterior["z"].mean}

    def decode(self, latents: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """
        :param dict latents: ``"y"`` (a point of the simplex) and ``"z"``, any batch shape.
        :returns: Bernoulli means of shape ``batch_shape + image_shape``.
        :rtype: torch.Tensor
        """
        if sorted(latents) != ["y", "z"]:
            raise ValueError(f"expected latents for the sites ['y', 'z'] but got {sorted(latents)}")
        return self._logits(latents["y"], latents["z"]).sigmoid()

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """:returns: ``decode(encode(x))``."""
        return self.decode(self.encode(x))

    def sample(self, num_samples: int) -> torch.Tensor:
        """:returns: Bernoulli means of images generated from the prior."""
        uniform = torch.zeros(num_samples, self.num_classes, device=self.temperature.device)
        y = dist.RelaxedOneHotCategorical(self.temperature, logits=uniform).sample()
        z = torch.randn(num_samples, self.style_dim, device=uniform.device)
        return self._logits(y, z).sigmoid()
