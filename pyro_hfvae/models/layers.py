# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Building blocks shared by the image models: a strided-conv encoder, its transposed-conv
mirror, a Gaussian head, and the data plate of their Pyro programs.
"""

import logging
from typing import Sequence

import pyro
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "ConvEncoder",
    "DeconvDecoder",
    "GaussianHead",
    "check_image_shape",
    "data_plate",
]

#: Smallest standard deviation a :class:`GaussianHead` outputs (keeps log densities finite).
MIN_SCALE = 1e-3


def check_image_shape(image_shape: Sequence[int], num_stages: int) -> tuple[int, int, int]:
    """
    Checks that ``image_shape`` is ``(channels, height, width)`` with sides divisible by
    ``2 ** num_stages`` (each stride-2 stage halves them).

    :param image_shape: ``(channels, height, width)``.
    :param int num_stages: number of stride-2 conv stages.
    :returns: the shape as a tuple of ints.
    :rtype: tuple

    Example::

        >>> check_image_shape((1, 28, 28), 2)
        (1, 28, 28)
    """
    shape = tuple(int(s) for s in image_shape)
    factor = 2**num_stages
    if len(shape) != 3 or min(shape) < 1 or shape[1] % factor or shape[2] % factor:
        raise ValueError(
            "expected image_shape (channels, height, width) with height and width divisible "
            f"by {factor} ({num_stages} stride-2 stages) but got {tuple(image_shape)}; pad or "
            "crop the images, or use fewer conv stages (a shorter channels=)"
        )
    return shape


def data_plate(x: torch.Tensor, idx: torch.Tensor | None = None, dataset_size: int | None = None) -> pyro.plate:
    """
    The ``"data"`` plate over the batch ``x``: subsampled from ``dataset_size`` items at the
    indices ``idx`` (so sites scale by ``N / B``), at ``arange(B)`` where only the size is
    given, or the whole batch where neither is.

    :param torch.Tensor x: the batch (its first dim is the batch).
    :param torch.Tensor idx: the items' indices in the data set (needs ``dataset_size``).
    :param int dataset_size: ``N``, the data-set size.
    :rtype: pyro.plate

    Example::

        >>> plate = data_plate(torch.zeros(4, 3), torch.tensor([0, 5, 7, 9]), dataset_size=100)
        >>> plate.size, plate.subsample_size
        (100, 4)
    """
    batch = x.shape[0]
    if idx is None:
        if dataset_size is None:
            return pyro.plate("data", size=batch, device=x.device)
        idx = torch.arange(batch, device=x.device)
    elif dataset_size is None:
        raise ValueError(
            "expected dataset_size=N together with idx (the data plate scales the batch by N/B) but got "
            "dataset_size=None; pass dataset_size=len(dataset)"
        )
    idx = torch.as_tensor(idx, device=x.device)
    if idx.shape != (batch,):
        raise ValueError(
            f"expected idx of shape ({batch},), one index per image in the data set, but got {tuple(idx.shape)}"
        )
    return pyro.plate("data", size=dataset_size, subsample=idx, device=x.device)


def _flatten_batch(tensor: torch.Tensor, event_ndim: int) -> tuple[torch.Tensor, torch.Size]:
    """Folds all leading (batch, particle) dims into one, for layers that take one batch dim."""
    batch_shape = tensor.shape[: tensor.dim() - event_ndim]
    return tensor.reshape((-1,) + tensor.shape[tensor.dim() - event_ndim :]), batch_shape


class ConvEncoder(nn.Module):
    """
    Images ``(..., C, H, W)`` to feature vectors ``(..., hidden_dim)``: one 4x4 stride-2
    convolution per entry of ``channels`` (each followed by a ReLU), then a linear layer
    and a ReLU.

    :param image_shape: ``(channels, height, width)``.
    :param channels: output channels of the conv stages.
    :param int hidden_dim: size of the feature vector.

    Example::

        >>> import torch
        >>> ConvEncoder((1, 28, 28), (8, 16), 32)(torch.zeros(5, 1, 28, 28)).shape
        torch.Size([5, 32])
    """

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], hidden_dim: int) -> None:
        super().__init__()
        in_channels, height, width = check_image_shape(image_shape, len(channels))
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1), nn.ReLU()]
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        factor = 2 ** len(channels)
        self.linear = nn.Linear(in_channels * (height // factor) * (width // factor), hidden_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        flat, batch_shape = _flatten_batch(images, 3)
        features = self.convs(flat).flatten(1)
        return F.relu(self.linear(features)).reshape(batch_shape + (-1,))


class DeconvDecoder(nn.Module):
    """
    Vectors ``(..., in_dim)`` to image-shaped outputs ``(..., C, H, W)`` (unconstrained):
    a linear layer to a ``(channels[0], H / 2**k, W / 2**k)`` map, then one 4x4 stride-2
    transposed convolution per stage, ReLU between them, ending in ``C`` channels.

    :param int in_dim: size of the input vector.
    :param image_shape: ``(channels, height, width)`` of the output.
    :param channels: channels of the feature maps, coarsest first (one stage each).

    Example::

        >>> import torch
        >>> DeconvDecoder(4, (3, 32, 32), (16, 8))(torch.zeros(2, 5, 4)).shape
        torch.Size([2, 5, 3, 32, 32])
    """

    def __init__(self, in_dim: int, image_shape: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        out_channels, height, width = check_image_shape(image_shape, len(channels))
        factor = 2 ** len(channels)
        self.map_shape = (channels[0], height // factor, width // factor)
        self.linear = nn.Linear(in_dim, channels[0] * self.map_shape[1] * self.map_shape[2])
        layers: list[nn.Module] = []
        for i, in_channels in enumerate(channels):
            last = i == len(channels) - 1
            layers.append(nn.ConvTranspose2d(in_channels, out_channels if last else channels[i + 1], 4, 2, 1))
            if not last:
                layers.append(nn.ReLU())
        self.deconvs = nn.Sequential(*layers)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        flat, batch_shape = _flatten_batch(vectors, 1)
        maps = F.relu(self.linear(flat)).reshape((-1,) + self.map_shape)
        out = self.deconvs(maps)
        return out.reshape(batch_shape + out.shape[1:])


class GaussianHead(nn.Module):
    """
    A two-layer MLP from ``(..., in_dim)`` to the location and standard deviation of a
    diagonal Gaussian over ``out_dim`` variables (softplus, floored at 1e-3).

    :param int in_dim: input size.
    :param int hidden_dim: hidden layer size.
    :param int out_dim: number of Gaussian variables.

    Example::

        >>> import torch
        >>> loc, scale = GaussianHead(3, 8, 2)(torch.zeros(4, 3))
        >>> loc.shape, bool((scale > 0).all())
        (torch.Size([4, 2]), True)
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 2 * out_dim))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw_scale = self.net(inputs).chunk(2, dim=-1)
        return loc, F.softplus(raw_scale) + MIN_SCALE
