# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Modularity (Ridgeway & Mozer) of a representation."""

import numpy as np
import torch

from pyro_hfvae.metrics._checks import check_min_columns
from pyro_hfvae.metrics.discrete_information import prepare

__all__ = [
    "modularity",
    "modularity_from_mutual_information",
]


def _modularity(matrix: torch.Tensor) -> float:
    squared = matrix.to(torch.float64).square()
    max_squared = squared.max(dim=1).values
    deviation = squared.sum(dim=1) - max_squared
    # A code with no information about any factor scores 0 (disentanglement_lib's convention).
    informative = max_squared > 0
    ratio = deviation / torch.where(informative, max_squared, torch.ones_like(max_squared))
    per_code = torch.where(
        informative, 1.0 - ratio / (matrix.shape[1] - 1), torch.zeros_like(ratio)
    )
    return float(per_code.mean())


def modularity_from_mutual_information(mutual_information) -> float:
    r"""
    Modularity of a (num_codes, num_factors) matrix of mutual informations.

    .. math::

        \delta_j = \frac{\sum_k M_{jk}^2 - \max_k M_{jk}^2}{(K - 1) \max_k M_{jk}^2}, \qquad
        \mathrm{modularity} = \frac{1}{J} \sum_j (1 - \delta_j),

    with :math:`1 - \delta_j := 0` for a code whose row is all zero.

    :param mutual_information: non-negative matrix, shape (num_codes, num_factors),
        num_factors >= 2.
    :type mutual_information: numpy.ndarray or torch.Tensor
    :returns: modularity in [0, 1].
    :rtype: float

    Example::

        >>> import numpy as np
        >>> modularity_from_mutual_information(np.array([[1., 0.], [0., 1.], [0., 0.]]))
        0.6666666666666666
    """
    matrix = torch.as_tensor(
        np.asarray(mutual_information)
        if not isinstance(mutual_information, torch.Tensor)
        else mutual_information
    )
    if matrix.dim() != 2:
        raise ValueError(
            "expected mutual_information of shape (num_codes, num_factors) but got shape "
            f"{tuple(matrix.shape)}"
        )
    check_min_columns(matrix.shape, 2, "mutual_information", "modularity compares a code's factors")
    if bool((matrix < 0).any()) or not bool(torch.isfinite(matrix).all()):
        raise ValueError(
            "expected finite, non-negative mutual informations but got negative, NaN or inf entries"
        )
    return _modularity(matrix)


def modularity(codes, factors, num_bins: int = 20) -> float:
    r"""
    Modularity: how much each code concentrates its information on a single factor.

    Computed by :func:`modularity_from_mutual_information` on the histogram
    mutual-information matrix of :func:`discrete_mutual_information` (the one MIG uses):
    for code :math:`j` with mutual informations :math:`M_{jk}`,

    .. math::

        \mathrm{modularity} = \frac{1}{J} \sum_j \left(1 -
            \frac{\sum_k M_{jk}^2 - \max_k M_{jk}^2}{(K - 1) \max_k M_{jk}^2}\right).

    Matches disentanglement_lib's ``modularity_score``.

    :param codes: representations, shape (num_samples, num_codes); numpy or torch.
    :type codes: numpy.ndarray or torch.Tensor
    :param factors: integer factor classes, shape (num_samples, num_factors), num_factors >= 2.
    :type factors: numpy.ndarray or torch.Tensor
    :param int num_bins: equal-width bins per code.
    :returns: modularity in [0, 1].
    :rtype: float

    Example::

        >>> import numpy as np
        >>> factors = np.random.RandomState(0).randint(4, size=(1000, 2))
        >>> round(modularity(factors / 3.0, factors), 2)
        1.0

    References

    [1] Learning Deep Disentangled Embeddings With the F-Statistic Loss,
        Karl Ridgeway, Michael C. Mozer (NeurIPS 2018)
    """
    _, factors, matrix = prepare(codes, factors, num_bins)
    check_min_columns(factors.shape, 2, "factors", "modularity compares a code's factors")
    return _modularity(matrix)
