# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""The beta-VAE disentanglement score (Higgins et al.), scikit-learn variant."""

import numpy as np
import torch

from pyro_hfvae.metrics._checks import RandomStateLike, as_random_state, check_positive_int
from pyro_hfvae.metrics._classifiers import one_vs_rest_logistic_regression
from pyro_hfvae.metrics.sampling import (
    Encoder,
    check_dataset,
    encode_observations,
    sample_factor_array,
)

__all__ = [
    "beta_vae_score",
]


def _pair_features(
    dataset,
    encode: Encoder,
    num_points: int,
    batch_size: int,
    random_state: np.random.RandomState,
    encode_batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(num_points, num_codes) mean absolute differences of pairs sharing a factor; the factor."""
    num_factors = dataset.num_factors
    fixed = random_state.randint(num_factors, size=num_points)
    first = sample_factor_array(dataset, num_points * batch_size, random_state).reshape(
        num_points, batch_size, -1
    )
    second = sample_factor_array(dataset, num_points * batch_size, random_state).reshape(
        num_points, batch_size, -1
    )
    rows = np.arange(num_points)
    second[rows, :, fixed] = first[rows, :, fixed]
    points_per_chunk = max(1, encode_batch_size // (2 * batch_size))
    features = []
    for start in range(0, num_points, points_per_chunk):
        pair = np.concatenate(
            [first[start : start + points_per_chunk], second[start : start + points_per_chunk]]
        )
        observations = dataset.sample_observations_from_factors(
            pair.reshape(-1, num_factors), random_state
        )
        codes = encode_observations(encode, observations).to(torch.float64)
        codes = codes.view(2, -1, batch_size, codes.shape[-1])
        features.append((codes[0] - codes[1]).abs().mean(dim=1).cpu())
    return torch.cat(features).numpy(), fixed


def beta_vae_score(
    dataset,
    encode: Encoder,
    random_state: RandomStateLike = 0,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    encode_batch_size: int = 4096,
) -> dict[str, float]:
    r"""
    beta-VAE score: accuracy of a linear classifier that names the factor two batches share
    from their mean absolute code difference.

    Each point fixes one uniformly chosen factor :math:`k`, draws two batches of
    ``batch_size`` factor tuples that agree on factor :math:`k` (pairwise), encodes them
    and forms :math:`d = \frac{1}{B} \sum_b |c^{(1)}_b - c^{(2)}_b|`. A one-vs-rest
    logistic regression (liblinear, the scikit-learn default disentanglement_lib ran)
    is fitted to predict :math:`k` from :math:`d` on ``num_train`` points and scored on
    ``num_eval`` fresh points. Points are drawn all at once and encoded
    ``encode_batch_size`` observations at a time (disentanglement_lib draws point by
    point, so the same seed gives different, equally distributed points).

    :param dataset: ground-truth data set (see :mod:`pyro_hfvae.metrics.sampling`).
    :param callable encode: observations -> posterior means (n, num_codes), torch or numpy.
    :param random_state: seed or :class:`numpy.random.RandomState` (advanced in place).
    :type random_state: int or numpy.random.RandomState
    :param int batch_size: pairs per point.
    :param int num_train: training points.
    :param int num_eval: evaluation points.
    :param int encode_batch_size: most observations per encoder call.
    :returns: ``{"train_accuracy", "eval_accuracy"}``.
    :rtype: dict

    Example::

        >>> import numpy as np, torch
        >>> class Grid:
        ...     num_factors = 2
        ...     def sample_factors(self, n, random_state):
        ...         return random_state.randint(3, size=(n, 2))
        ...     def sample_observations_from_factors(self, factors, random_state):
        ...         return torch.as_tensor(factors, dtype=torch.float32)
        >>> beta_vae_score(Grid(), lambda x: x, num_train=100, num_eval=50)
        {'train_accuracy': 1.0, 'eval_accuracy': 1.0}

    References

    [1] beta-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework,
        Irina Higgins et al. (ICLR 2017)
    """
    check_dataset(dataset)
    batch_size = check_positive_int(batch_size, "batch_size")
    num_train = check_positive_int(num_train, "num_train")
    num_eval = check_positive_int(num_eval, "num_eval")
    encode_batch_size = check_positive_int(encode_batch_size, "encode_batch_size")
    random_state = as_random_state(random_state)
    train_features, train_labels = _pair_features(
        dataset, encode, num_train, batch_size, random_state, encode_batch_size
    )
    if np.unique(train_labels).size < 2:
        raise ValueError(
            "expected training points for at least 2 factors but got "
            f"{np.unique(train_labels).size}; increase num_train (got {num_train}) or use a data "
            "set with several factors"
        )
    model = one_vs_rest_logistic_regression(random_state).fit(train_features, train_labels)
    eval_features, eval_labels = _pair_features(
        dataset, encode, num_eval, batch_size, random_state, encode_batch_size
    )
    return {
        "train_accuracy": float(np.mean(model.predict(train_features) == train_labels)),
        "eval_accuracy": float(np.mean(model.predict(eval_features) == eval_labels)),
    }
