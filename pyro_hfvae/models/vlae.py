# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The variational ladder autoencoder (VLAE): levels of independent latents read from
increasing encoder depth and fed to the decoder top-down; growable with a
:class:`~pyro_hfvae.infer.progressive.ProgressiveSchedule` (pro-VLAE).
"""

import logging
import math
from typing import Mapping, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyro_hfvae.distributions.logit_bernoulli import LogitBernoulli
from pyro_hfvae.infer.progressive import ProgressiveSchedule
from pyro_hfvae.models.layers import data_plate

logger = logging.getLogger(__name__)

__all__ = [
    "VLAE",
]


def _mlp_to_feature_map(latent_dim: int, hidden_dim: int, channels: int, size: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(latent_dim, hidden_dim),
        nn.ELU(),
        nn.Linear(hidden_dim, channels * size[0] * size[1]),
        nn.ELU(),
        nn.Unflatten(1, (channels, size[0], size[1])),
    )


class VLAE(nn.Module):
    r"""
    Variational ladder autoencoder with ``levels`` levels of independent Gaussian latents
    :math:`z_1, \dots, z_L` (:math:`z_L` most abstract), all with prior :math:`N(0, I)`,
    for images with Bernoulli pixels (binary, or grey levels in [0, 1] scored by their
    cross-entropy).

    Encoder: a trunk of 4x4 stride-2 convolutions :math:`h_l = f^e_l(h_{l-1})`,
    :math:`h_0 = x`, and per level a head (4x4 stride-2 conv, dense ``hidden_dim``, dense
    to mean and log-variance) giving :math:`q(z_l \mid h_l)`. Decoder:
    :math:`g_L = f^d_L(z_L)`, :math:`g_l = f^d_l([\alpha_l m_l(z_l); g_{l+1}])`, where the
    embedding :math:`m_l` (dense ``hidden_dim``, dense to :math:`g_{l+1}`'s feature map)
    is concatenated on channels, and a last transposed convolution gives the pixel logits.
    Images whose sides are not powers of two (28x28 digits) are zero-padded to the next
    power of two and the logits cropped back. The defaults (32 channels, 256 hidden) are
    the authors' sizes; ``channels=8, hidden_dim=32`` trains in seconds on a CPU.

    Growth follows the paper's Eq. (9) and the authors' code. With a ``schedule``
    (:class:`~pyro_hfvae.infer.progressive.ProgressiveSchedule` over :attr:`sites`),
    :math:`\alpha_l` = ``schedule.fade_in(site)`` multiplies the decoder embedding, which
    is therefore exactly zero before the level is added (it then has no influence on the
    reconstruction); from the level's stage on it also multiplies the head's input,
    :math:`q(z_l \mid \alpha_l h_l)`. A level not yet added reads its features unscaled,
    as in the authors' code, so the pre-KL term regularises its head on real inputs.
    Without a schedule every level is on with :math:`\alpha = 1`: the plain VLAE.

    :meth:`model` and :meth:`guide` have one sample site per level, named ``"z{l}"``,
    inside ``pyro.plate("data", size=N, subsample=idx)``, and an observed site ``"x"``.
    Layers have no batch normalisation, so that one data point's posterior does not depend on
    the rest of its batch. The authors' code calls batch normalisation in TensorFlow 1's default
    inference mode with statistics that are never updated, so its layers only scale and shift.

    :param int levels: number of latent levels ``L`` (sites ``"zL"`` ... ``"z1"``).
    :param int latent_dim: dimensions of each level.
    :param tuple image_shape: ``(channels, height, width)`` of the images.
    :param int channels: channels of every convolution.
    :param int hidden_dim: width of the dense layers.

    Example::

        >>> vlae = VLAE(levels=3, latent_dim=2, image_shape=(1, 28, 28), channels=4, hidden_dim=8)
        >>> vlae.sites
        ('z3', 'z2', 'z1')
        >>> x = torch.rand(5, 1, 28, 28).round()
        >>> {site: mean.shape for site, mean in vlae.encode(x).items()}
        {'z3': torch.Size([5, 2]), 'z2': torch.Size([5, 2]), 'z1': torch.Size([5, 2])}
        >>> vlae.reconstruct(x).shape, vlae.sample(4).shape
        (torch.Size([5, 1, 28, 28]), torch.Size([4, 1, 28, 28]))

    References

    [1] Learning Hierarchical Features from Generative Models,
        Shengjia Zhao, Jiaming Song, Stefano Ermon (ICML 2017)
    [2] Progressive Learning and Disentanglement of Hierarchical Representations,
        Zhiyuan Li, Jaideep Vitthal Murkute, Prashnna Kumar Gyawali, Linwei Wang (ICLR 2020)
    """

    def __init__(
        self,
        levels: int = 3,
        latent_dim: int = 2,
        image_shape: Sequence[int] = (1, 64, 64),
        channels: int = 32,
        hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        for name, value in (
            ("levels", levels),
            ("latent_dim", latent_dim),
            ("channels", channels),
            ("hidden_dim", hidden_dim),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"expected {name} to be an int >= 1 but got {value!r}")
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in image_shape):
            raise ValueError(
                f"expected image_shape (channels, height, width) of positive ints but got "
                f"{image_shape}; e.g. (1, 64, 64) for dSprites or (1, 28, 28) for digits"
            )
        padded = tuple(2 ** math.ceil(math.log2(s)) for s in image_shape[1:])
        # Level l's head convolves h_l (side padded / 2**l) once more with stride 2.
        if min(padded) < 2 ** (levels + 1):
            raise ValueError(
                f"expected images of more than {2**levels} pixels a side for {levels} levels (each "
                f"level halves the resolution twice) but got image_shape {image_shape}; use fewer "
                "levels"
            )
        self.levels = levels
        self.latent_dim = latent_dim
        self.image_shape = image_shape
        self.channels = channels
        self.hidden_dim = hidden_dim
        #: Site names, top (most abstract, added first by a schedule) to bottom.
        self.sites: tuple[str, ...] = tuple(f"z{level}" for level in range(levels, 0, -1))
        height, width = image_shape[1:]
        self._padding = (  # F.pad order: left, right, top, bottom
            (padded[1] - width) // 2,
            padded[1] - width - (padded[1] - width) // 2,
            (padded[0] - height) // 2,
            padded[0] - height - (padded[0] - height) // 2,
        )

        def side(level: int) -> tuple[int, int]:
            return padded[0] // 2**level, padded[1] // 2**level

        def conv(in_channels: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.ELU())

        def deconv(in_channels: int) -> nn.Module:
            return nn.Sequential(nn.ConvTranspose2d(in_channels, channels, 4, stride=2, padding=1), nn.ELU())

        # Trunk, bottom-up: trunk[l - 1] maps h_{l-1} to h_l.
        self.trunk = nn.ModuleList(conv(image_shape[0] if level == 1 else channels) for level in range(1, levels + 1))
        self.heads = nn.ModuleDict()
        self.embeddings = nn.ModuleDict()
        self.merges = nn.ModuleDict()
        for level in range(1, levels + 1):
            site = f"z{level}"
            rows, cols = side(level + 1)
            self.heads[site] = nn.Sequential(
                conv(channels),
                nn.Flatten(),
                nn.Linear(channels * rows * cols, hidden_dim),
                nn.ELU(),
                nn.Linear(hidden_dim, 2 * latent_dim),
            )
            self.embeddings[site] = _mlp_to_feature_map(latent_dim, hidden_dim, channels, (rows, cols))
            # The top level's f^d_L reads only its embedding; the others concatenate g_{l+1}.
            self.merges[site] = deconv(channels if level == levels else 2 * channels)
        self.output = nn.ConvTranspose2d(channels, image_shape[0], 4, stride=2, padding=1)

    # ---------------------------------------------------------------- helpers

    def _check_images(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"expected images of shape (batch, {', '.join(map(str, self.image_shape))}) but "
                f"got {shape}; add a channel axis with x.unsqueeze(1) where it is missing"
            )
        if not x.is_floating_point():
            raise ValueError(f"expected floating-point images in [0, 1] but got dtype {x.dtype}; use x.float()")

    def _check_schedule(self, schedule: ProgressiveSchedule | None) -> None:
        if schedule is not None and tuple(schedule.levels) != self.sites:
            raise ValueError(
                f"expected a schedule over this model's levels {list(self.sites)} (top first) but "
                f"got levels {list(schedule.levels)}; construct it with "
                "ProgressiveSchedule(levels=vlae.sites, ...)"
            )

    def _coefficients(self, schedule: ProgressiveSchedule | None) -> dict[str, tuple[float, float]]:
        """(head input scale, embedding scale) per site."""
        self._check_schedule(schedule)
        if schedule is None:
            return {site: (1.0, 1.0) for site in self.sites}
        active = set(schedule.active)
        return {
            site: (schedule.fade_in(site) if site in active else 1.0, schedule.fade_in(site)) for site in self.sites
        }

    def _head_parameters(
        self, x: torch.Tensor, schedule: ProgressiveSchedule | None
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        self._check_images(x)
        coefficients = self._coefficients(schedule)
        h = F.pad(x, self._padding)
        parameters = {}
        for level in range(1, self.levels + 1):
            site = f"z{level}"
            h = self.trunk[level - 1](h)
            out = self.heads[site](h * coefficients[site][0])
            loc, log_variance = out.split(self.latent_dim, dim=-1)
            parameters[site] = (loc, torch.exp(0.5 * log_variance))
        return {site: parameters[site] for site in self.sites}

    def _logits(self, z: Mapping[str, torch.Tensor], schedule: ProgressiveSchedule | None) -> torch.Tensor:
        coefficients = self._coefficients(schedule)
        missing = [site for site in self.sites if site not in z]
        if missing:
            raise ValueError(f"expected a value for every level {list(self.sites)} but {missing} are missing")
        g = None
        for site in self.sites:
            value = z[site]
            if value.dim() != 2 or value.shape[-1] != self.latent_dim:
                raise ValueError(f"expected {site} of shape (batch, {self.latent_dim}) but got {tuple(value.shape)}")
            alpha = coefficients[site][1]
            if g is None:  # the top level has no fade-in and nothing to concatenate
                g = self.merges[site](self.embeddings[site](value))
                continue
            if alpha == 0.0:
                # Not yet added: an exactly zero embedding (and no graph through m_l).
                embedding = g.new_zeros(g.shape)
            else:
                embedding = alpha * self.embeddings[site](value)
            g = self.merges[site](torch.cat([embedding, g], dim=1))
        logits = self.output(g)
        left, right, top, bottom = self._padding
        return logits[..., top : logits.shape[-2] - bottom, left : logits.shape[-1] - right]

    # ---------------------------------------------------------- Pyro programs

    def model(
        self,
        x: torch.Tensor,
        idx: torch.Tensor | None = None,
        dataset_size: int | None = None,
        schedule: ProgressiveSchedule | None = None,
    ) -> None:
        """
        The generative model :math:`p(x \\mid z_1..z_L) \\prod_l p(z_l)`.

        :param torch.Tensor x: images, shape ``(batch,) + image_shape``, values in [0, 1].
        :param torch.Tensor idx: the images' indices in the data set (with ``dataset_size``).
        :param int dataset_size: ``N``, the data-set size; the plate scales by ``N / batch``.
        :param ~pyro_hfvae.infer.progressive.ProgressiveSchedule schedule: growth state;
            ``None`` for all levels on.
        """
        pyro.module("vlae", self)
        with data_plate(x, idx, dataset_size):
            z = {}
            for site in self.sites:
                prior = dist.Normal(x.new_zeros(x.shape[0], self.latent_dim), 1.0).to_event(1)
                z[site] = pyro.sample(site, prior)
            logits = self._logits(z, schedule)
            pyro.sample("x", LogitBernoulli(logits=logits, validate_args=False).to_event(3), obs=x)

    def guide(
        self,
        x: torch.Tensor,
        idx: torch.Tensor | None = None,
        dataset_size: int | None = None,
        schedule: ProgressiveSchedule | None = None,
    ) -> None:
        """
        The inference model :math:`\\prod_l q(z_l \\mid \\alpha_l h_l(x))`; same arguments
        as :meth:`model`.
        """
        pyro.module("vlae", self)
        with data_plate(x, idx, dataset_size):
            for site, (loc, scale) in self._head_parameters(x, schedule).items():
                pyro.sample(site, dist.Normal(loc, scale).to_event(1))

    # ------------------------------------------------------------ inference

    def posterior(self, x: torch.Tensor, schedule: ProgressiveSchedule | None = None) -> dict[str, dist.Distribution]:
        """
        :param torch.Tensor x: images, shape ``(batch,) + image_shape``.
        :param schedule: growth state (``None``: all levels on, :math:`\\alpha = 1`).
        :returns: ``{site: q(z_l | x)}``, diagonal Normals with batch shape ``(batch,)``
            and event shape ``(latent_dim,)``, top level first.
        :rtype: dict
        """
        return {
            site: dist.Normal(loc, scale).to_event(1)
            for site, (loc, scale) in self._head_parameters(x, schedule).items()
        }

    def encode(self, x: torch.Tensor, schedule: ProgressiveSchedule | None = None) -> dict[str, torch.Tensor]:
        """
        :param torch.Tensor x: images, shape ``(batch,) + image_shape``.
        :param schedule: growth state (``None``: all levels on).
        :returns: ``{site: posterior mean}``, each of shape ``(batch, latent_dim)``, top level
            first; concatenated, the representation the metrics score.
        :rtype: dict
        """
        return {site: loc for site, (loc, _) in self._head_parameters(x, schedule).items()}

    def decode(self, latents: Mapping[str, torch.Tensor], schedule: ProgressiveSchedule | None = None) -> torch.Tensor:
        """
        :param dict latents: ``{site: value}`` for every level, each of shape ``(batch, latent_dim)``.
        :param schedule: growth state (``None``: all levels on).
        :returns: pixel probabilities, shape ``(batch,) + image_shape``.
        :rtype: torch.Tensor
        """
        return torch.sigmoid(self._logits(latents, schedule))

    def reconstruct(self, x: torch.Tensor, schedule: ProgressiveSchedule | None = None) -> torch.Tensor:
        """
        :param torch.Tensor x: images, shape ``(batch,) + image_shape``.
        :param schedule: growth state (``None``: all levels on).
        :returns: pixel probabilities decoded from the posterior means:
            ``decode(encode(x, schedule), schedule)``.
        :rtype: torch.Tensor
        """
        return self.decode(self.encode(x, schedule), schedule)

    def sample(self, num_samples: int, schedule: ProgressiveSchedule | None = None) -> torch.Tensor:
        """
        :param int num_samples: number of images.
        :param schedule: growth state (``None``: all levels on).
        :returns: pixel probabilities decoded from draws of the prior :math:`N(0, I)` of
            every level, shape ``(num_samples,) + image_shape``.
        :rtype: torch.Tensor
        """
        reference = self.output.weight
        z = {
            site: torch.randn(num_samples, self.latent_dim, dtype=reference.dtype, device=reference.device)
            for site in self.sites
        }
        return self.decode(z, schedule)
