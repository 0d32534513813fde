# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Information metrics of an encoder's posterior over a whole data set.

The aggregate posterior :math:`q(z) = \\frac{1}{N} \\sum_{m=1}^N q(z | x_m)` is evaluated
exactly (every data point is a mixture component), at one sample :math:`z_s \\sim q(z|x_s)`
per data point or at a random subset of them, as beta-TCVAE and pro-VLAE do, by the engine
that also serves :class:`~pyro_hfvae.HFVAELoss` (:func:`~pyro_hfvae.ops.mixture_log_marginals`,
with uniform weights over the data set instead of minibatch-stratified ones). The marginals
are reduced over the same group tree as the loss's (:func:`~pyro_hfvae.ops.groups_to_tree`:
group paths nest with ``"/"``). Work is done in chunks of samples x components so that
memory stays below ``pairwise_memory_mb``; tensors stay on the posterior's device.
"""

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from pyro_hfvae.metrics._checks import (
    RandomStateLike,
    as_random_state,
    check_positive_int,
    torch_seed,
)
from pyro_hfvae.metrics._posterior_mixture import (
    Posterior,
    SiteLayout,
    as_site_mapping,
    choose_samples,
    sample_sites,
)
from pyro_hfvae.ops import LogMarginals, groups_to_tree
from pyro_hfvae.ops.mixture import check_memory_budget
from pyro_hfvae.util import forked_rng

__all__ = [
    "PRUNED_NATS",
    "MutualInformation",
    "TotalCorrelation",
    "mutual_information",
    "total_correlation",
]

DataLike = torch.Tensor | np.ndarray | Iterable

#: Below this many nats of :math:`I(x; z)` a variable counts as pruned and a group as collapsed:
#: its posterior hardly depends on the input (the HFVAE paper's Fig. 4 and its "inactive" dims).
PRUNED_NATS = 0.05


@dataclasses.dataclass(frozen=True)
class MutualInformation:
    """
    Estimates of :math:`I(x; \\cdot)` in nats (each at most :math:`\\log N`).

    :ivar float total: :math:`I(x; z)` of all sites together.
    :ivar dict groups: group path -> :math:`I(x; z_g)`, for every group of the tree
        (``"style"`` and its sub-groups ``"style/pose"``, ...).
    :ivar dict sites: site name -> :math:`I(x; z_{\\text{site}})`.
    :ivar dict variables: site name -> array of :math:`I(x; z_v)` per variable of the site
        (shape ``event_shape[:variable_ndim]``; a 0-d array for a one-variable site).
    :ivar int num_data: number of data points N (the mixture's components).
    :ivar int num_samples: number of samples the expectations average over.
    """

    total: float
    groups: dict[str, float]
    sites: dict[str, float]
    variables: dict[str, np.ndarray]
    num_data: int
    num_samples: int


@dataclasses.dataclass(frozen=True)
class TotalCorrelation:
    """
    Total correlations of the aggregate posterior in nats, with
    ``total == between_groups + sum(within_groups.values())`` and
    ``total == sum`` of the levels of :attr:`terms` (per sample, hence exactly).

    :ivar float total: :math:`\\sum_v H(z_v) - H(z)` over all variables.
    :ivar float between_groups: :math:`\\sum_g H(z_g) - H(z)` over the top-level groups.
    :ivar dict within_groups: top-level group -> :math:`\\sum_{v \\in g} H(z_v) - H(z_g)`
        (all its levels together).
    :ivar dict terms: the total correlations :class:`~pyro_hfvae.HFVAELoss` weights, under
        the names of its ``terms``: ``tc_between``, ``tc_within`` (summed over top-level
        groups), ``tc_within_2``, ... for deeper levels, and ``tc_within/<path>`` for every
        group with at least two children (sub-groups or variables), each the total
        correlation between the node's children
        (:meth:`LogMarginals.tc_terms <pyro_hfvae.ops.LogMarginals.tc_terms>`). The loss
        subtracts the prior's total correlations, zero for factorised priors.
    :ivar int num_data: number of data points N.
    :ivar int num_samples: number of samples the expectations average over.
    """

    total: float
    between_groups: float
    within_groups: dict[str, float]
    terms: dict[str, float]
    num_data: int
    num_samples: int


def _data_batches(data: DataLike, batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        yield from data.split(batch_size)
        return
    for item in data:
        # DataLoaders commonly yield (x, labels, ...): the observations come first.
        yield item[0] if isinstance(item, (tuple, list)) else item


def _log_marginals(
    posterior: Posterior,
    data: DataLike,
    groups,
    num_samples,
    random_state,
    batch_size: int,
    pairwise_memory_mb: float,
) -> tuple[SiteLayout, LogMarginals, LogMarginals, int]:
    r"""
    The sites, and at each scored sample :math:`z_s` the log densities
    :math:`\log q(t(z_s) | x_s)` and :math:`\log q(t(z_s))` of every variable, site and
    node of the group tree (float64), and the number of data points.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    if num_samples is not None:
        num_samples = check_positive_int(num_samples, "num_samples")
    random_state = as_random_state(random_state)
    components, own = [], []
    layout = tree = None
    with forked_rng(seed=torch_seed(random_state)):
        for x in _data_batches(data, batch_size):
            with torch.no_grad():
                sites = as_site_mapping(posterior(x))
            if layout is None:
                layout = SiteLayout(sites)
                tree = groups_to_tree(layout.sites, groups)
            layout.check(sites, len(x))
            sample = sample_sites(sites)
            own.append(layout.own_log_marginals(sites, sample, tree))
            components.append((sites, sample))
    if layout is None:
        raise ValueError("expected data with at least one batch but got none")
    own = own[0].map(lambda *blocks: torch.cat(blocks), *own[1:])
    num_data = own.joint.shape[0]
    chosen = torch.from_numpy(choose_samples(num_data, num_samples, random_state)).to(own.joint.device)
    points = {name: torch.cat([sample[name] for _, sample in components])[chosen] for name in layout.sites}
    log_sum, _ = layout.log_marginals(points, components, tree, pairwise_memory_mb, sites=True)
    return layout, own.map(lambda t: t[chosen]), log_sum.map(lambda t: t - math.log(num_data)), num_data


def mutual_information(
    posterior: Posterior,
    data: DataLike,
    groups: Mapping[str, Sequence[str]] | None = None,
    num_samples: int | None = None,
    random_state: RandomStateLike = 0,
    batch_size: int = 1024,
    pairwise_memory_mb: float = 1024.0,
) -> MutualInformation:
    r"""
    Mutual information between the data and every latent variable, site, group and all
    latents, from the posterior itself.

    With one sample :math:`z_s \sim q(z | x_s)` per data point (or ``num_samples`` of them
    at random) and the exact aggregate posterior :math:`q(z) = \frac1N \sum_m q(z | x_m)`,

    .. math::

        \hat I(x; z_t) = \frac{1}{S} \sum_s \Big[ \log q(z_{s,t} | x_s)
            - \log \frac{1}{N} \sum_{m=1}^{N} q(z_{s,t} | x_m) \Big]
            = \hat H(z_t) - \hat H(z_t | x)

    for every target :math:`t`: each variable (an element of an ``Independent`` event, or a
    whole multivariate event such as a Concrete), each site, each group and all sites. Each
    term is at most :math:`\log N`, so estimates saturate there. This is the estimator of
    beta-TCVAE and pro-VLAE (which report :math:`I(x; z_l)` per ladder level).

    The posterior is called once per data batch under ``torch.no_grad()`` (put the encoder in
    eval mode); its distributions are kept for the whole data set (parameters only) and the
    pairwise log densities are evaluated in chunks of at most ``pairwise_memory_mb``.

    :param callable posterior: ``x_batch -> {site: Distribution}`` (or one Distribution, named
        ``"z"``), each with ``batch_shape == (len(x_batch),)``, e.g.
        ``Normal(loc, scale).to_event(1)`` or ``RelaxedOneHotCategorical(temperature, logits=...)``.
    :param data: the whole data set: a tensor (split into ``batch_size`` rows) or an iterable of
        batches (tensors, or tuples whose first element is the observations, as DataLoaders yield).
    :type data: torch.Tensor or numpy.ndarray or Iterable
    :param dict groups: group path -> list of site names (``"style/pose"`` nests a group in
        ``"style"``, as in :class:`~pyro_hfvae.HFVAELoss`); sites in no group form their own
        group. Default: one group per site.
    :param int num_samples: score a random subset of this many samples (default: all N).
    :param random_state: seed or :class:`numpy.random.RandomState` for the samples and the subset.
    :type random_state: int or numpy.random.RandomState
    :param int batch_size: rows per posterior call when ``data`` is a tensor.
    :param float pairwise_memory_mb: bound on the pairwise log densities held at once.
    :returns: the estimates.
    :rtype: MutualInformation

    Example::

        >>> import pyro.distributions as dist, torch
        >>> posterior = lambda x: {"z": dist.Normal(x, 0.01).to_event(1)}
        >>> separated = torch.arange(8.0).reshape(8, 1)              # 8 distinct codes
        >>> round(mutual_information(posterior, separated).total, 4)  # log 8
        2.0794
        >>> abs(mutual_information(posterior, torch.zeros(8, 1)).total) < 1e-6   # identical codes
        True

    References

    [1] Isolating Sources of Disentanglement in Variational Autoencoders,
        Ricky T. Q. Chen, Xuechen Li, Roger Grosse, David Duvenaud (NeurIPS 2018)
    [2] Progressive Learning and Disentanglement of Hierarchical Representations,
        Zhiyuan Li, Jaideep Vitthal Murkute, Prashnna Kumar Gyawali, Linwei Wang (ICLR 2020)
    """
    pairwise_memory_mb = check_memory_budget(pairwise_memory_mb)
    layout, own, aggregate, num_data = _log_marginals(
        posterior, data, groups, num_samples, random_state, batch_size, pairwise_memory_mb
    )
    information = own.map(lambda a, b: (a - b).mean(0).cpu().numpy(), aggregate)
    return MutualInformation(
        total=float(information.joint),
        groups={path: float(value) for path, value in information.nodes.items() if path},
        sites={name: float(value) for name, value in information.sites.items()},
        variables={name: value.reshape(tuple(layout.var_shape[name])) for name, value in information.variables.items()},
        num_data=num_data,
        num_samples=own.joint.shape[0],
    )


def total_correlation(
    posterior: Posterior,
    data: DataLike,
    groups: Mapping[str, Sequence[str]] | None = None,
    num_samples: int | None = None,
    random_state: RandomStateLike = 0,
    batch_size: int = 1024,
    pairwise_memory_mb: float = 1024.0,
) -> TotalCorrelation:
    r"""
    Total correlation of the aggregate posterior, overall, between groups and within each group.

    With the samples and the exact mixture of :func:`mutual_information`,

    .. math::

        \widehat{TC}(z) = \sum_v \hat H(z_v) - \hat H(z)
            = \frac{1}{S} \sum_s \Big[ \log q(z_s) - \sum_v \log q(z_{s,v}) \Big],

    and likewise between groups (:math:`\sum_g \hat H(z_g) - \hat H(z)`) and within group
    :math:`g` (:math:`\sum_{v \in g} \hat H(z_v) - \hat H(z_g)`): the terms (A) and (i) of the
    HFVAE decomposition, evaluated on the whole data set instead of a minibatch.
    Variables are as in :func:`mutual_information` (a multivariate event is one variable,
    so a one-site Concrete group has zero within-group TC).

    :param callable posterior: ``x_batch -> {site: Distribution}`` (see :func:`mutual_information`).
    :param data: the whole data set, a tensor or an iterable of batches.
    :type data: torch.Tensor or numpy.ndarray or Iterable
    :param dict groups: group path -> list of site names (``"/"`` nests groups; default: one
        group per site).
    :param int num_samples: score a random subset of this many samples (default: all N).
    :param random_state: seed or :class:`numpy.random.RandomState`.
    :type random_state: int or numpy.random.RandomState
    :param int batch_size: rows per posterior call when ``data`` is a tensor.
    :param float pairwise_memory_mb: bound on the pairwise log densities held at once.
    :returns: the estimates.
    :rtype: TotalCorrelation

    Example::

        >>> import pyro.distributions as dist, torch
        >>> posterior = lambda x: {"z": dist.Normal(x, 0.01).to_event(1)}
        >>> copies = torch.arange(8.0).reshape(8, 1).expand(8, 2)   # z_1 = z_2: TC = log 8
        >>> round(total_correlation(posterior, copies).total, 4)
        2.0794

    References

    [1] Structured Disentangled Representations, Babak Esmaeili et al. (AISTATS 2019)

    [2] Isolating Sources of Disentanglement in Variational Autoencoders,
        Ricky T. Q. Chen, Xuechen Li, Roger Grosse, David Duvenaud (NeurIPS 2018)
    """
    pairwise_memory_mb = check_memory_budget(pairwise_memory_mb)
    _, _, aggregate, num_data = _log_marginals(
        posterior, data, groups, num_samples, random_state, batch_size, pairwise_memory_mb
    )
    tree = aggregate.tree

    def variable_sum(sites: list[str]) -> torch.Tensor:
        return sum(aggregate.variables[name].sum(-1) for name in sites)

    return TotalCorrelation(
        total=float((aggregate.joint - variable_sum(tree.all_sites())).mean()),
        between_groups=float(
            (aggregate.joint - sum(aggregate.nodes[group.path] for group in tree.children)).mean()
        ),
        within_groups={
            group.path: float((aggregate.nodes[group.path] - variable_sum(group.all_sites())).mean())
            for group in tree.children
        },
        terms={name: float(value.mean()) for name, value in aggregate.tc_terms().items()},
        num_data=num_data,
        num_samples=aggregate.joint.shape[0],
    )
