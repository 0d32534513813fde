# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import math
import warnings

import torch
from torch.distributions import Distribution, LowRankMultivariateNormal, MultivariateNormal

from pyro_hfvae.distributions.util import _unwrap

__all__ = [
    "tc_weight_bound",
    "warn_unbounded",
]


def tc_weight_bound(prior: Distribution) -> float:
    r"""
    The largest total-correlation weight that keeps the HFVAE objective bounded for a
    group whose prior is ``prior``.

    :class:`~pyro_hfvae.HFVAELoss` penalises a group's total correlation *relative to the
    prior's*, :math:`w\,[\mathrm{TC}_q - (\log p(z_g) - \sum_e \log p(z_{ge}))]`, while the
    dimension-wise KL keeps weight 1. For a Gaussian prior with covariance :math:`\Sigma`,
    marginal variances :math:`D = \mathrm{diag}\,\Sigma` and correlation matrix
    :math:`C = D^{-1/2} \Sigma D^{-1/2}`, the terms that grow with a code stretched by
    :math:`a` along a direction :math:`u` are
    :math:`-\tfrac{a^2}{2}\, u^\top \big[(1 - w) D^{-1} + w \Sigma^{-1}\big] u`, so the
    objective is unbounded above (the loss unbounded below) exactly when that matrix is
    not positive definite, that is when

    .. math::

        w \ge \frac{\lambda_{\max}(C)}{\lambda_{\max}(C) - 1},

    which is :math:`(1 + \rho)/\rho` for a pair with correlation :math:`\rho > 0`. A prior
    without correlations (or any non-Gaussian prior, for which this function makes no
    claim) gives ``inf``. Batched priors give the smallest bound over the batch.

    :param prior: the group's prior distribution (``MultivariateNormal`` or
        ``LowRankMultivariateNormal``, possibly wrapped by Pyro's ``expand`` or ``mask``).
    :type prior: ~torch.distributions.Distribution
    :return: the bound, ``inf`` where every weight is safe.
    :rtype: float

    Example::

        >>> import torch, pyro.distributions as dist
        >>> prior = dist.MultivariateNormal(torch.zeros(2), torch.tensor([[1.0, 0.8], [0.8, 1.0]]))
        >>> round(tc_weight_bound(prior), 4)  # (1 + 0.8) / 0.8
        2.25
        >>> tc_weight_bound(dist.Normal(torch.zeros(2), 1.0).to_event(1))
        inf

    References

    [1] Structured Disentangled Representations,
        Babak Esmaeili, Hao Wu, Sarthak Jain, Alican Bozkurt, N. Siddharth, Brooks Paige,
        Dana H. Brooks, Jennifer Dy, Jan-Willem van de Meent (AISTATS 2019)
    """
    prior = _unwrap(prior)
    if not isinstance(prior, (MultivariateNormal, LowRankMultivariateNormal)):
        return math.inf
    with torch.no_grad():
        cov = prior.covariance_matrix.reshape((-1,) + prior.event_shape * 2).double()
        std = cov.diagonal(dim1=-2, dim2=-1).sqrt()
        corr = cov / (std[..., :, None] * std[..., None, :])
        largest = torch.linalg.eigvalsh(corr)[..., -1].max().item()
    # Numerical noise leaves an uncorrelated prior's largest eigenvalue a hair above 1.
    if largest <= 1.0 + 1e-9:
        return math.inf
    return largest / (largest - 1.0)


def warn_unbounded(
    loss_name: str, warned: set, prior_fns: dict, nodes: list, tc_weights: dict, num_vars: dict
) -> None:
    """
    Warns (once per site: the names already warned about are in ``warned``) where a
    correlated prior makes the objective unbounded below: a node's total-correlation weight
    at or above :func:`tc_weight_bound` of a site's prior. Part of a loss's structure
    analysis: the bound is read from the priors of the first evaluation of each structure.

    :param str loss_name: the loss, for the message.
    :param set warned: sites already warned about; updated.
    :param dict prior_fns: site -> prior distribution.
    :param list nodes: the group tree's internal nodes.
    :param dict tc_weights: node path -> total-correlation weight.
    :param dict num_vars: site -> number of variables per data point.
    """
    for node in nodes:
        weight = tc_weights.get(node.path, 1.0)
        if weight <= 1.0:
            continue
        for name in node.sites:
            # Cheap tests first: the bound needs an eigendecomposition (and a device sync).
            if num_vars[name] < 2 or name in warned:
                continue
            bound = tc_weight_bound(prior_fns[name])
            if weight >= bound:
                warned.add(name)
                warnings.warn(
                    f"{loss_name}: the total-correlation weight {weight:g} on group {node.path!r} is at or above "
                    f"{bound:.4g}, the bound set by the correlated prior of site {name!r}; the objective is "
                    "unbounded below there (the code can stretch along the prior's correlated direction). "
                    "Use a weight below the bound (see pyro_hfvae.infer.weight_bound)",
                    RuntimeWarning,
                    stacklevel=2,
                )
