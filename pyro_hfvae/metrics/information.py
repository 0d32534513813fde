# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Information metrics of an encoder's posterior over a whole data set.

The aggregate posterior :math:`q(z) = \\frac{1}{N} \\sum_{m=1}^N q(z | x_m)` is evaluated
exactly (every data point is a mixture component), at one sample :math:`z_s \\sim q(z|x_s)`
per data point or at a random subset of them, as beta-TCVAE and pro-VLAE do. Work is done
in chunks of samples x components so that memory stays below ``max_memory_mb``; tensors
stay on the posterior's device.
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
    mixture_log_density,
    sample_sites,
)
from pyro_hfvae.util import forked_rng

__all__ = [
    "MutualInformation",
    "TotalCorrelation",
    "mutual_information",
    "total_correlation",
]

DataLike = torch.Tensor | np.ndarray | Iterable


@dataclasses.dataclass(frozen=True)
class MutualInformation:
    """
    Estimates of :math:`I(x; \\cdot)` in nats (each at most :math:`\\log N`).

    :ivar float total: :math:`I(x; z)` of all sites together.
    :ivar dict groups: group name -> :math:`I(x; z_g)`.
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
    ``total == between_groups + sum(within_groups.values())`` (per sample, hence exactly).

    :ivar float total: :math:`\\sum_v H(z_v) - H(z)` over all variables.
    :ivar float between_groups: :math:`\\sum_g H(z_g) - H(z)`.
    :ivar dict within_groups: group name -> :math:`\\sum_{v \\in g} H(z_v) - H(z_g)`.
    :ivar int num_data: number of data points N.
    :ivar int num_samples: number of samples the expectations average over.
    """

    total: float
    between_groups: float
    within_groups: dict[str, float]
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


def _resolve_groups(
    sites: Sequence[str], groups: Mapping[str, Sequence[str]] | None
) -> dict[str, list[str]]:
    """Each listed group, then every site in no group as a group of its own (named after it)."""
    resolved: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for group, members in (groups or {}).items():
        if isinstance(members, str):
            raise TypeError(
                f"expected group {group!r} to list site names but got the string {members!r}; "
                f"write [{members!r}]"
            )
        members = list(members)
        for site in members:
            if site not in sites:
                raise ValueError(
                    f"expected the sites of group {group!r} among the posterior's sites "
                    f"{list(sites)} but got {site!r}"
                )
            if site in owner:
                raise ValueError(
                    f"expected every site in at most one group but {site!r} is in "
                    f"{owner[site]!r} and {group!r}"
                )
            owner[site] = group
        if not members:
            raise ValueError(f"expected group {group!r} to list at least one site but got none")
        resolved[group] = members
    for site in sites:
        if site not in owner:
            if site in resolved:
                raise ValueError(
                    f"site {site!r} is in no group, so it forms a group of its own, but a group of "
                    f"that name already exists; add it to a group or rename the group"
                )
            resolved[site] = [site]
    return resolved


class _Targets:
    """Reduces per-variable log densities to the targets: variables, sites, groups, then all."""

    def __init__(self, layout: SiteLayout, groups: dict[str, list[str]]) -> None:
        self.layout = layout
        self.groups = groups
        num_variables = layout.num_variables
        self.site_index = {name: num_variables + i for i, name in enumerate(layout.sites)}
        self.group_index = {
            name: num_variables + len(layout.sites) + j for j, name in enumerate(groups)
        }
        self.total_index = num_variables + len(layout.sites) + len(groups)
        self.count = self.total_index + 1

    def __call__(self, log_prob: torch.Tensor) -> torch.Tensor:
        sites = {
            name: log_prob[..., self.layout.slices[name]].sum(-1) for name in self.layout.sites
        }
        group_sums = [sum(sites[name] for name in members) for members in self.groups.values()]
        total = sum(sites.values())
        return torch.cat(
            [log_prob, torch.stack(list(sites.values()) + group_sums + [total], dim=-1)], dim=-1
        )


def _log_densities(
    posterior: Posterior,
    data: DataLike,
    groups,
    num_samples,
    random_state,
    batch_size: int,
    max_memory_mb: float,
) -> tuple[_Targets, torch.Tensor, torch.Tensor, int]:
    r"""
    Returns the targets, and at each scored sample :math:`z_s` the log densities
    :math:`\log q(t(z_s) | x_s)` and :math:`\log q(t(z_s))` of every target (both (S, T),
    float64), and the number of data points.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    if num_samples is not None:
        num_samples = check_positive_int(num_samples, "num_samples")
    if not max_memory_mb > 0:
        raise ValueError(f"expected max_memory_mb > 0 but got {max_memory_mb!r}")
    random_state = as_random_state(random_state)
    components, values, own = [], [], []
    targets = None
    with forked_rng(seed=torch_seed(random_state)):
        for x in _data_batches(data, batch_size):
            with torch.no_grad():
                sites = as_site_mapping(posterior(x))
            if targets is None:
                layout = SiteLayout(sites)
                targets = _Targets(layout, _resolve_groups(layout.sites, groups))
            targets.layout.check(sites, len(x))
            sample = sample_sites(sites)
            with torch.no_grad():
                own.append(targets(targets.layout.log_prob(sites, sample)).to(torch.float64))
            components.append(sites)
            values.append(sample)
    if targets is None:
        raise ValueError("expected data with at least one batch but got none")
    layout = targets.layout
    own = torch.cat(own)
    num_data = own.shape[0]
    chosen = torch.from_numpy(choose_samples(num_data, num_samples, random_state)).to(own.device)
    points = {name: torch.cat([value[name] for value in values])[chosen] for name in layout.sites}
    log_sum, _ = mixture_log_density(
        layout, points, components, targets, targets.count, max_memory_mb
    )
    return targets, own[chosen], log_sum - math.log(num_data), num_data


def mutual_information(
    posterior: Posterior,
    data: DataLike,
    groups: Mapping[str, Sequence[str]] | None = None,
    num_samples: int | None = None,
    random_state: RandomStateLike = 0,
    batch_size: int = 1024,
    max_memory_mb: float = 1024.0,
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
    pairwise log densities are evaluated in chunks of at most ``max_memory_mb``.

    :param callable posterior: ``x_batch -> {site: Distribution}`` (or one Distribution, named
        ``"z"``), each with ``batch_shape == (len(x_batch),)``, e.g.
        ``Normal(loc, scale).to_event(1)`` or ``RelaxedOneHotCategorical(temperature, logits=...)``.
    :param data: the whole data set: a tensor (split into ``batch_size`` rows) or an iterable of
        batches (tensors, or tuples whose first element is the observations, as DataLoaders yield).
    :type data: torch.Tensor or numpy.ndarray or Iterable
    :param dict groups: group name -> list of site names; sites in no group form their own
        group. Default: one group per site.
    :param int num_samples: score a random subset of this many samples (default: all N).
    :param random_state: seed or :class:`numpy.random.RandomState` for the samples and the subset.
    :type random_state: int or numpy.random.RandomState
    :param int batch_size: rows per posterior call when ``data`` is a tensor.
    :param float max_memory_mb: bound on the pairwise log densities held at once.
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
    targets, own, aggregate, num_data = _log_densities(
        posterior, data, groups, num_samples, random_state, batch_size, max_memory_mb
    )
    information = (own - aggregate).mean(0).cpu().numpy()
    layout = targets.layout
    return MutualInformation(
        total=float(information[targets.total_index]),
        groups={name: float(information[index]) for name, index in targets.group_index.items()},
        sites={name: float(information[index]) for name, index in targets.site_index.items()},
        variables={
            name: information[layout.slices[name]].reshape(tuple(layout.var_shape[name]))
            for name in layout.sites
        },
        num_data=num_data,
        num_samples=own.shape[0],
    )


def total_correlation(
    posterior: Posterior,
    data: DataLike,
    groups: Mapping[str, Sequence[str]] | None = None,
    num_samples: int | None = None,
    random_state: RandomStateLike = 0,
    batch_size: int = 1024,
    max_memory_mb: float = 1024.0,
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
    :param dict groups: group name -> list of site names (default: one group per site).
    :param int num_samples: score a random subset of this many samples (default: all N).
    :param random_state: seed or :class:`numpy.random.RandomState`.
    :type random_state: int or numpy.random.RandomState
    :param int batch_size: rows per posterior call when ``data`` is a tensor.
    :param float max_memory_mb: bound on the pairwise log densities held at once.
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
    targets, _, aggregate, num_data = _log_densities(
        posterior, data, groups, num_samples, random_state, batch_size, max_memory_mb
    )
    layout = targets.layout
    variable_sum = {name: aggregate[:, layout.slices[name]].sum(1) for name in layout.sites}
    within = {
        group: float(
            (
                aggregate[:, targets.group_index[group]]
                - sum(variable_sum[site] for site in members)
            ).mean()
        )
        for group, members in targets.groups.items()
    }
    group_sum = sum(aggregate[:, index] for index in targets.group_index.values())
    return TotalCorrelation(
        total=float(
            (aggregate[:, targets.total_index] - aggregate[:, : layout.num_variables].sum(1)).mean()
        ),
        between_groups=float((aggregate[:, targets.total_index] - group_sum).mean()),
        within_groups=within,
        num_data=num_data,
        num_samples=aggregate.shape[0],
    )
