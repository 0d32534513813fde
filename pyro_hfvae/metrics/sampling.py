# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Sampling codes from a ground-truth data set and an encoder.

A ground-truth data set is used by duck typing: it needs ``num_factors``,
``sample_factors(n, random_state) -> int64 array (n, num_factors)`` and
``sample_observations_from_factors(factors, random_state) -> tensor (n, *observation_shape)``.
An ``encode`` callable maps a batch of observations to representations (posterior means),
returning a torch tensor (any device) or a numpy array of shape (n, num_codes).
"""

from typing import Any, Callable

import numpy as np
import torch

from pyro_hfvae.metrics._checks import (
    RandomStateLike,
    as_codes,
    as_random_state,
    check_positive_int,
)

__all__ = [
    "sample_codes",
]

Encoder = Callable[[torch.Tensor], Any]


def check_dataset(dataset) -> None:
    missing = [
        name
        for name in ("num_factors", "sample_factors", "sample_observations_from_factors")
        if not hasattr(dataset, name)
    ]
    if missing:
        raise TypeError(
            "expected a ground-truth data set with num_factors, sample_factors(n, random_state) "
            "and sample_observations_from_factors(factors, random_state) but "
            f"{type(dataset).__name__} lacks {', '.join(missing)}; wrap the data in a class "
            "providing them (see pyro_hfvae.datasets)"
        )


def sample_factor_array(dataset, num: int, random_state: np.random.RandomState) -> np.ndarray:
    factors = np.asarray(dataset.sample_factors(num, random_state))
    if factors.shape != (num, dataset.num_factors):
        raise ValueError(
            f"expected {type(dataset).__name__}.sample_factors({num}, random_state) to return "
            f"shape ({num}, {dataset.num_factors}) but got {factors.shape}"
        )
    return factors.astype(np.int64, copy=False)


def encode_observations(encode: Encoder, observations: torch.Tensor) -> torch.Tensor:
    """Representations of a batch, a floating tensor (n, num_codes) on the encoder's device."""
    with torch.no_grad():
        codes = encode(observations)
    try:
        codes = as_codes(codes, "encode(observations)")
    except ValueError as error:
        raise ValueError(f"{error} (for a batch of {len(observations)} observations)") from None
    if codes.shape[0] != len(observations):
        raise ValueError(
            f"expected encode to return one row per observation ({len(observations)}) but got "
            f"shape {tuple(codes.shape)}; return the posterior means of shape (batch, num_codes)"
        )
    return codes


def sample_codes(
    dataset,
    encode: Encoder,
    num_points: int,
    random_state: RandomStateLike = 0,
    batch_size: int = 16,
) -> tuple[torch.Tensor, np.ndarray]:
    """
    Draws factor tuples uniformly at random, renders and encodes them, in batches.

    The disentanglement_lib protocol (``generate_batch_factor_code``): per batch of at most
    ``batch_size`` points, ``sample_factors`` then ``sample_observations_from_factors`` then
    ``encode``.

    :param dataset: ground-truth data set (duck-typed, see the module docstring).
    :param callable encode: observations -> representations (n, num_codes), torch or numpy.
    :param int num_points: number of points.
    :param random_state: seed or :class:`numpy.random.RandomState` (advanced in place).
    :type random_state: int or numpy.random.RandomState
    :param int batch_size: points per sampling and encoder call.
    :returns: codes (num_points, num_codes) tensor on the encoder's output device, and
        factors (num_points, num_factors) int64 array.
    :rtype: tuple

    Example::

        >>> import numpy as np, torch
        >>> class Grid:
        ...     num_factors = 2
        ...     def sample_factors(self, n, random_state):
        ...         return random_state.randint(3, size=(n, 2))
        ...     def sample_observations_from_factors(self, factors, random_state):
        ...         return torch.as_tensor(factors, dtype=torch.float32)
        >>> codes, factors = sample_codes(Grid(), lambda x: 2 * x, 5)
        >>> codes.shape, factors.shape
        (torch.Size([5, 2]), (5, 2))
    """
    check_dataset(dataset)
    num_points = check_positive_int(num_points, "num_points")
    batch_size = check_positive_int(batch_size, "batch_size")
    random_state = as_random_state(random_state)
    codes, factors = [], []
    for start in range(0, num_points, batch_size):
        num = min(batch_size, num_points - start)
        batch_factors = sample_factor_array(dataset, num, random_state)
        observations = dataset.sample_observations_from_factors(batch_factors, random_state)
        codes.append(encode_observations(encode, observations))
        factors.append(batch_factors)
    return torch.cat(codes), np.concatenate(factors)
