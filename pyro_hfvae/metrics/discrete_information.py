# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Histogram discretisation of codes and the plug-in mutual-information matrix.

Shared by :func:`~pyro_hfvae.metrics.mig`, :func:`~pyro_hfvae.metrics.mig_sup` and
:func:`~pyro_hfvae.metrics.modularity`, following disentanglement_lib: each code is cut
into ``num_bins`` equal-width bins between its sample minimum and maximum
(``np.digitize(c, np.histogram(c, num_bins)[1][:-1])``), and the mutual information of
every (code, factor) pair is the plug-in estimate from their joint histogram, in nats
(what ``sklearn.metrics.mutual_info_score`` returns). All pairs are computed at once
from ``bincount`` of joint indices, on the device of the codes.
"""

import numpy as np
import torch

from pyro_hfvae.metrics._checks import as_codes, as_factors, check_positive_int

__all__ = [
    "discrete_entropy",
    "discrete_mutual_information",
]

# Joint-index tensors are built for at most this many (sample, code) entries at a time.
_MAX_INDEX_ELEMENTS = 1 << 23


def histogram_bins(codes: torch.Tensor, num_bins: int) -> torch.Tensor:
    """
    Bin index in ``[0, num_bins)`` of every entry, per column, exactly as numpy's
    ``np.digitize(c, np.histogram(c, num_bins)[1][:-1]) - 1`` (same edges, same dtype,
    same side at ties).
    """
    num_samples = codes.shape[0]
    if num_samples < num_bins:
        raise ValueError(
            f"expected at least num_bins={num_bins} samples to discretise codes into {num_bins} "
            f"bins but got {num_samples} samples; pass more samples or a smaller num_bins"
        )
    low = codes.min(dim=0).values
    high = codes.max(dim=0).values
    # np.histogram widens an empty range to [min - 0.5, max + 0.5].
    flat = low == high
    low = torch.where(flat, low - 0.5, low)
    high = torch.where(flat, high + 0.5, high)
    # np.linspace in the codes' dtype: arange * step + start, last edge set to the stop.
    step = (high - low) / num_bins
    steps = torch.arange(num_bins, dtype=codes.dtype, device=codes.device)
    inner_edges = steps[None, :] * step[:, None] + low[:, None]  # (num_codes, num_bins): edges[:-1]
    # digitize(right=False) is searchsorted(side="right"); every value is >= the first edge.
    bins = torch.searchsorted(inner_edges.contiguous(), codes.T.contiguous(), right=True)
    return (bins - 1).T


def _column_classes(labels: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Relabels every column to classes 0..K-1 (mutual information ignores label values)."""
    columns = []
    sizes = []
    for column in labels.T:
        _, inverse = torch.unique(column, return_inverse=True)
        columns.append(inverse)
        sizes.append(int(inverse.max()) + 1)
    return torch.stack(columns, dim=1), sizes


def _entropy_from_counts(counts: torch.Tensor, num_samples: int, dims) -> torch.Tensor:
    p = counts.to(torch.float64) / num_samples
    return -torch.xlogy(p, p).sum(dims)


def mutual_information_matrix(
    code_bins: torch.Tensor, factor_classes: torch.Tensor, factor_sizes: list[int], num_bins: int
) -> torch.Tensor:
    """
    Plug-in mutual information (nats, float64) of every code column with every factor.

    :param code_bins: (n, C) long bins in [0, num_bins).
    :param factor_classes: (n, F) long classes, factor k in [0, factor_sizes[k]).
    :returns: (C, F) tensor on the device of ``code_bins``.
    """
    num_samples, num_codes = code_bins.shape
    device = code_bins.device
    factor_classes = factor_classes.to(device)
    chunk = max(1, _MAX_INDEX_ELEMENTS // max(num_samples, 1))
    columns = []
    for k, size in enumerate(factor_sizes):
        factor = factor_classes[:, k]
        factor_entropy = _entropy_from_counts(
            torch.bincount(factor, minlength=size), num_samples, 0
        )
        blocks = []
        for start in range(0, num_codes, chunk):
            bins = code_bins[:, start : start + chunk]
            width = bins.shape[1]
            offsets = torch.arange(width, device=device) * (num_bins * size)
            joint_index = (bins * size + factor[:, None] + offsets[None, :]).flatten()
            joint = torch.bincount(joint_index, minlength=width * num_bins * size).view(
                width, num_bins, size
            )
            joint_entropy = _entropy_from_counts(joint, num_samples, (1, 2))
            code_entropy = _entropy_from_counts(joint.sum(2), num_samples, 1)
            blocks.append(code_entropy + factor_entropy - joint_entropy)
        columns.append(torch.cat(blocks))
    # Rounding can leave -1e-16 where the true plug-in value is 0 (sklearn clips there too).
    return torch.stack(columns, dim=1).clamp(min=0.0)


def prepare(codes, factors, num_bins: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """Checks the arguments; returns (codes tensor, factors array, (C, F) mutual information)."""
    num_bins = check_positive_int(num_bins, "num_bins", minimum=2)
    codes = as_codes(codes)
    factors = as_factors(factors, codes.shape[0])
    factor_classes, factor_sizes = _column_classes(torch.from_numpy(factors))
    code_bins = histogram_bins(codes, num_bins)
    return (
        codes,
        factors,
        mutual_information_matrix(code_bins, factor_classes, factor_sizes, num_bins),
    )


def factor_entropies(factors: np.ndarray, device: torch.device) -> torch.Tensor:
    """Empirical entropy (nats, float64) of every factor column."""
    classes, sizes = _column_classes(torch.from_numpy(factors).to(device))
    return torch.stack(
        [
            _entropy_from_counts(torch.bincount(classes[:, k], minlength=size), factors.shape[0], 0)
            for k, size in enumerate(sizes)
        ]
    )


def discrete_mutual_information(codes, factors, num_bins: int = 20) -> np.ndarray:
    r"""
    Plug-in mutual information between histogram-discretised codes and factors.

    Code :math:`c_i` is cut into ``num_bins`` equal-width bins between its sample
    minimum and maximum, giving :math:`\hat c_i`; then

    .. math::

        M_{ik} = \sum_{b, v} \hat p(\hat c_i = b, v_k = v)
                 \log \frac{\hat p(\hat c_i = b, v_k = v)}{\hat p(\hat c_i = b)\, \hat p(v_k = v)}

    in nats, with empirical frequencies :math:`\hat p`. This is disentanglement_lib's
    ``discrete_mutual_info(histogram_discretize(codes), factors)``, computed for all pairs
    at once.

    :param codes: representations, shape (num_samples, num_codes), numpy or torch, any device.
    :type codes: numpy.ndarray or torch.Tensor
    :param factors: integer factor classes, shape (num_samples, num_factors).
    :type factors: numpy.ndarray or torch.Tensor
    :param int num_bins: number of equal-width bins per code.
    :returns: float64 array of shape (num_codes, num_factors).
    :rtype: numpy.ndarray

    Example::

        >>> import numpy as np
        >>> factors = np.repeat(np.arange(4), 25)[:, None]
        >>> codes = np.stack([factors[:, 0] / 3.0, np.zeros(100)], axis=1)
        >>> discrete_mutual_information(codes, factors).round(4)   # log 4 and 0
        array([[1.3863],
               [0.    ]])

    References

    [1] Challenging Common Assumptions in the Unsupervised Learning of Disentangled
        Representations, Francesco Locatello et al. (ICML 2019): disentanglement_lib.
    """
    _, _, matrix = prepare(codes, factors, num_bins)
    return matrix.cpu().numpy()


def discrete_entropy(factors) -> np.ndarray:
    r"""
    Empirical entropy (nats) of every factor,
    :math:`H(v_k) = -\sum_v \hat p(v_k = v) \log \hat p(v_k = v)`.

    :param factors: integer factor classes, shape (num_samples, num_factors).
    :type factors: numpy.ndarray or torch.Tensor
    :returns: float64 array of shape (num_factors,).
    :rtype: numpy.ndarray

    Example::

        >>> import numpy as np
        >>> discrete_entropy(np.array([[0, 0], [1, 0], [2, 1], [3, 1]])).round(4)   # log 4, log 2
        array([1.3863, 0.6931])
    """
    factors = as_factors(factors, require_variation=False)
    return factor_entropies(factors, torch.device("cpu")).numpy()
