# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""MIG-sup: the per-code mutual information gap of pro-VLAE, histogram estimator."""

import logging

import torch

from pyro_hfvae.metrics._checks import check_min_columns
from pyro_hfvae.metrics.discrete_information import factor_entropies, prepare

logger = logging.getLogger(__name__)

__all__ = [
    "mig_sup",
]


def mig_sup(codes, factors, num_bins: int = 20, active_variance: float = 0.01) -> float:
    r"""
    MIG-sup: for every active code, the gap between its two largest normalised mutual
    informations with the factors, averaged over active codes.

    With :math:`M_{jk}` the plug-in mutual information of discretised code :math:`j` and
    factor :math:`k` (:func:`discrete_mutual_information`) and
    :math:`\tilde M_{jk} = M_{jk} / H(v_k)`,

    .. math::

        \mathrm{MIG\text{-}sup} = \frac{1}{|A|} \sum_{j \in A}
            \left( \tilde M_{j k^{(1)}_j} - \tilde M_{j k^{(2)}_j} \right),
        \qquad A = \{ j : \mathrm{Var}(c_j) > \text{active\_variance} \},

    where :math:`k^{(1)}_j, k^{(2)}_j` are the factors with the largest and second largest
    normalised mutual information with code :math:`j` (the variance has ``ddof=1``). It
    penalises a code that mixes factors, which MIG (one gap per factor) does not. Returns
    0.0 (and logs a warning) when no code is active.

    :param codes: representations, shape (num_samples, num_codes); numpy or torch.
    :type codes: numpy.ndarray or torch.Tensor
    :param factors: integer factor classes, shape (num_samples, num_factors), num_factors >= 2.
    :type factors: numpy.ndarray or torch.Tensor
    :param int num_bins: equal-width bins per code.
    :param float active_variance: a code is active when its sample variance exceeds this
        (pro-VLAE: 0.01 on the posterior means).
    :returns: MIG-sup in [0, 1].
    :rtype: float

    Example::

        >>> import numpy as np
        >>> factors = np.random.RandomState(0).randint(4, size=(1000, 2))
        >>> mixed = factors[:, :1] / 3.0 + factors[:, 1:] / 12.0   # one code for two factors
        >>> round(mig_sup(np.hstack([factors / 3.0, mixed]), factors), 2)   # (1 + 1 + 0) / 3
        0.66

    References

    [1] Progressive Learning and Disentanglement of Hierarchical Representations,
        Zhiyuan Li, Jaideep Vitthal Murkute, Prashnna Kumar Gyawali, Linwei Wang (ICLR 2020)
    """
    codes, factors, matrix = prepare(codes, factors, num_bins)
    check_min_columns(
        factors.shape, 2, "factors", "MIG-sup compares the two most informative factors"
    )
    normalized = matrix / factor_entropies(factors, matrix.device)[None, :]
    top_two = torch.topk(normalized, 2, dim=1).values
    active = codes.to(torch.float64).var(dim=0) > active_variance
    if not bool(active.any()):
        logger.warning(
            "mig_sup: no code has variance above active_variance=%g; returning 0.0", active_variance
        )
        return 0.0
    return float((top_two[:, 0] - top_two[:, 1])[active.to(matrix.device)].mean())
