# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Mutual Information Gap (MIG) of a representation, disentanglement_lib's histogram estimator."""

import torch

from pyro_hfvae.metrics._checks import check_min_columns
from pyro_hfvae.metrics.discrete_information import factor_entropies, prepare

__all__ = [
    "mig",
]


def mig(codes, factors, num_bins: int = 20) -> float:
    r"""
    Mutual Information Gap from histogram-discretised codes.

    With :math:`M_{jk}` the plug-in mutual information of discretised code :math:`j`
    and factor :math:`k` (:func:`discrete_mutual_information`) and :math:`H(v_k)` the
    empirical factor entropy,

    .. math::

        \mathrm{MIG} = \frac{1}{K} \sum_{k=1}^{K}
            \frac{M_{j^{(1)}_k k} - M_{j^{(2)}_k k}}{H(v_k)},

    where :math:`j^{(1)}_k, j^{(2)}_k` are the codes with the largest and second largest
    mutual information with factor :math:`k`. Equals disentanglement_lib's
    ``discrete_mig`` (``num_bins=20``). Plug-in estimates are biased: a perfect code of
    a 40-valued factor cannot exceed :math:`\log 20 / \log 40` with 20 bins.

    :param codes: representations (e.g. posterior means), shape (num_samples, num_codes),
        num_codes >= 2; numpy or torch, float32 or float64, any device.
    :type codes: numpy.ndarray or torch.Tensor
    :param factors: integer factor classes, shape (num_samples, num_factors); every factor
        must take at least two values.
    :type factors: numpy.ndarray or torch.Tensor
    :param int num_bins: equal-width bins per code, between its sample min and max.
    :returns: MIG in [0, 1].
    :rtype: float

    Example::

        >>> import numpy as np
        >>> factors = np.random.RandomState(0).randint(4, size=(1000, 2))
        >>> round(mig(np.hstack([factors / 3.0, np.zeros((1000, 1))]), factors), 2)
        1.0

    References

    [1] Isolating Sources of Disentanglement in Variational Autoencoders,
        Ricky T. Q. Chen, Xuechen Li, Roger Grosse, David Duvenaud (NeurIPS 2018)
    [2] Challenging Common Assumptions in the Unsupervised Learning of Disentangled
        Representations, Francesco Locatello et al. (ICML 2019): disentanglement_lib.
    """
    codes, factors, matrix = prepare(codes, factors, num_bins)
    check_min_columns(codes.shape, 2, "codes", "MIG compares the two most informative codes")
    top_two = torch.topk(matrix, 2, dim=0).values
    entropy = factor_entropies(factors, matrix.device)
    return float(((top_two[0] - top_two[1]) / entropy).mean())
