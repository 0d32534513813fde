# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
r"""
Minibatch-stratified estimates of aggregate-posterior marginals.

For a batch of ``B`` data points drawn from a data set of ``N``, the aggregate
posterior :math:`q(v) = \frac{1}{N}\sum_n q(v \mid x_n)` of any set of variables ``v``
is estimated at the sample :math:`v_b` drawn for data point ``b`` by

.. math::

    \log \hat q(v_b) = \log \sum_{b'} W_{bb'}\, q(v_b \mid x_{b'}),\qquad
    W_{bb} = \frac{1}{N},\quad W_{bb'} = \frac{N-1}{N(B-1)}\ (b' \ne b),

whose rows sum to one (``N == B`` gives uniform weights ``1/B``).

The ``(b, b')`` table is built with the *pairwise trick*: the value's batch axis
is moved in front of all batch dims, leaving a singleton in its place, so that the
distribution's ``log_prob`` broadcasts to ``[b, ..., b', ...]``.

References

[1] Structured Disentangled Representations,
    Babak Esmaeili, Hao Wu, Sarthak Jain, et al. (AISTATS 2019)
[2] Isolating Sources of Disentanglement in Variational Autoencoders,
    Ricky T. Q. Chen, Xuechen Li, Roger Grosse, David Duvenaud (NeurIPS 2018)
"""

import logging
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch.distributions import Distribution
from torch.utils.checkpoint import checkpoint

from pyro_hfvae.infer.groups import GroupNode
from pyro_hfvae.infer.plate_layout import PlateLayout

logger = logging.getLogger(__name__)

__all__ = [
    "TreeMarginals",
    "pairwise_log_prob",
    "stratified_log_weights",
    "tree_marginals",
]


def stratified_log_weights(rows: slice, batch_size: int, dataset_size: int, *, dtype=None, device=None) -> torch.Tensor:
    """
    Log weights :math:`\\log W_{bb'}` of the minibatch-stratified estimator for the rows ``b`` in ``rows``.

    :param slice rows: the rows ``b`` (a contiguous slice of ``range(batch_size)``).
    :param int batch_size: ``B`` (at least 2).
    :param int dataset_size: ``N`` (at least ``B``).
    :returns: a ``(len(rows), B)`` tensor whose rows ``logsumexp`` to 0.

    Example::

        >>> stratified_log_weights(slice(0, 2), 3, 10).exp()
        tensor([[0.1000, 0.4500, 0.4500],
                [0.4500, 0.1000, 0.4500]])
    """
    if batch_size < 2 or dataset_size < batch_size:
        raise ValueError(f"expected 2 <= batch_size <= dataset_size but got B={batch_size}, N={dataset_size}")
    start, stop, _ = rows.indices(batch_size)
    log_diag = -math.log(dataset_size)
    log_off = math.log(dataset_size - 1) - math.log(dataset_size) - math.log(batch_size - 1)
    weights = torch.full((stop - start, batch_size), log_off, dtype=dtype, device=device)
    index = torch.arange(stop - start, device=device)
    weights[index, index + start] = log_diag
    return weights


def pairwise_log_prob(
    score: Callable[[Distribution, torch.Tensor], torch.Tensor],
    fn: Distribution,
    value: torch.Tensor,
    layout: PlateLayout,
    rows: slice,
) -> torch.Tensor:
    """
    The table ``[p, b, b', v] = score(fn at (p, b'), value at (p, b))[v]`` for ``b`` in ``rows``.

    :param callable score: ``score(fn, value)`` returning per-variable log densities of
        shape ``batch_shape + variable_shape`` (e.g. :func:`~pyro_hfvae.distributions.util`).
    :param ~torch.distributions.Distribution fn: the site's distribution (batch over the data plate).
    :param torch.Tensor value: the site's value.
    :param PlateLayout layout: where the particle and data plates are.
    :param slice rows: which data points ``b`` to score.
    :returns: a ``(P, len(rows), B, V)`` tensor (``V`` = number of variables, nested plates included).
    """
    batch_ndim = value.dim() - len(fn.event_shape)
    data_axis = batch_ndim + layout.data_dim
    start, stop, _ = rows.indices(layout.batch_size)
    value_rows = value.narrow(data_axis, start, stop - start) if value.size(data_axis) > 1 else value
    # [b, ..., 1 (data axis), ..., event]: log_prob broadcasts b against fn's b'.
    pair = value_rows.unsqueeze(0).transpose(0, data_axis + 1)
    table = score(fn, pair)
    table = layout.front(table, batch_ndim, lead=1)  # (P, B', b, rest...)
    table = table.transpose(1, 2)
    num_particles = layout.num_particles
    table = table.expand((num_particles, stop - start, layout.batch_size) + table.shape[3:])
    return table.reshape(num_particles, stop - start, layout.batch_size, -1)

# About this many (P, rows, B, V) temporaries are alive at once while a chunk is scored.
_TEMPORARIES = 8


@dataclass
class TreeMarginals:
    """
    Log marginals at each data point's own sample, as ``(P, B, ...)`` tensors (``P``
    particles, ``B`` data points).

    :param dict variables: site -> ``(P, B, V)`` :math:`\\log \\hat q(z_{bge})`, one column per variable.
    :param dict nodes: group path -> ``(P, B)`` :math:`\\log \\hat q(z_{b,\\mathrm{node}})`;
        the root ``""`` is the joint :math:`\\log \\hat q(z_b)`.
    :param dict prior_variables: site -> ``(P, B, V)`` batch-mixture prior marginals
        :math:`\\log \\frac1B \\sum_{b'} p(z_{bge} \\mid \\mathrm{pa}_{b'})`, for the sites
        given ``prior_fns``.
    :param dict prior_sites: site -> ``(P, B)``, the same for the whole site.
    """

    variables: dict
    nodes: dict
    prior_variables: dict
    prior_sites: dict


def tree_marginals(
    layout: PlateLayout,
    tree: GroupNode,
    values: Mapping[str, torch.Tensor],
    guide_fns: Mapping[str, Distribution],
    score: Callable[[str, Distribution, torch.Tensor], torch.Tensor],
    num_variables: Mapping[str, int],
    *,
    prior_fns: Mapping[str, Distribution] | None = None,
    pairwise_memory_mb: float = 1024.0,
) -> TreeMarginals:
    r"""
    Minibatch-stratified estimates (:mod:`pyro_hfvae.ops.aggregate_posterior`) of the
    aggregate posterior at every leaf variable and every internal node of ``tree``.

    A node's density at :math:`(b, b')` is the product of its children's, so one pairwise
    table per site serves every level of the tree. The ``B x B`` tables are built in chunks
    of rows that fit ``pairwise_memory_mb``; when gradients are on, each chunk is recomputed
    in the backward pass (:func:`torch.utils.checkpoint.checkpoint`) instead of being kept.

    :param PlateLayout layout: the data and particle plates (``dataset_size`` set).
    :param GroupNode tree: the group tree over the sites of ``values``.
    :param dict values: site -> sampled value.
    :param dict guide_fns: site -> guide distribution (batched over the data plate).
    :param callable score: ``score(site, fn, value)`` -> per-variable log densities
        (``batch_shape + variable_shape``), e.g. :func:`~pyro_hfvae.distributions.util`.
    :param dict num_variables: site -> its number of variables per data point.
    :param dict prior_fns: site -> prior distribution, for the sites whose prior marginals
        are to be estimated by the uniform batch mixture.
    :param float pairwise_memory_mb: memory budget for the pairwise tables.
    :rtype: TreeMarginals

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro_hfvae.distributions import variable_log_prob
        >>> from pyro_hfvae.infer.groups import build_group_tree
        >>> def guide():
        ...     with pyro.plate("data", 100, subsample_size=4):
        ...         pyro.sample("z", dist.Normal(torch.zeros(4, 3), 1.0).to_event(1))
        >>> trace = pyro.poutine.trace(guide).get_trace()
        >>> layout = PlateLayout.from_trace(trace)
        >>> site = trace.nodes["z"]
        >>> out = tree_marginals(layout, build_group_tree({"z": None}), {"z": site["value"]}, {"z": site["fn"]},
        ...                      lambda name, fn, v: variable_log_prob(fn, v, 1), {"z": 3})
        >>> out.variables["z"].shape, out.nodes[""].shape
        (torch.Size([1, 4, 3]), torch.Size([1, 4]))
        >>> # Identical posteriors: every marginal is the posterior itself.
        >>> torch.allclose(out.nodes[""], site["fn"].log_prob(site["value"])[None])
        True
    """
    prior_fns = {} if prior_fns is None else prior_fns
    names = list(values)
    nodes = tree.internal_nodes()
    some_value = values[names[0]]
    B = layout.batch_size
    num_columns = sum(num_variables[n] * (2 if n in prior_fns else 1) + 1 for n in names) + len(nodes)
    bytes_per_row = layout.num_particles * B * max(num_columns, 1) * some_value.element_size() * _TEMPORARIES
    rows_per_chunk = max(1, min(B, int(pairwise_memory_mb * 2**20 // bytes_per_row)))
    log_uniform = -math.log(B)

    def chunk(start: int, stop: int) -> tuple:
        rows = slice(start, stop)
        log_w = stratified_log_weights(rows, B, layout.dataset_size, dtype=some_value.dtype, device=some_value.device)
        out = []
        site_tables = {}
        for name in names:

            def site_score(fn, v, name=name):
                return score(name, fn, v)

            table = pairwise_log_prob(site_score, guide_fns[name], values[name], layout, rows)
            out.append(torch.logsumexp(table + log_w[..., None], dim=2))
            site_tables[name] = table.sum(-1)
            if name in prior_fns:
                prior = pairwise_log_prob(site_score, prior_fns[name], values[name], layout, rows)
                out.append(torch.logsumexp(prior, dim=2) + log_uniform)
                out.append(torch.logsumexp(prior.sum(-1), dim=2) + log_uniform)
        node_tables = {}
        for node in reversed(nodes):  # children before parents
            parts = [site_tables[s] for s in node.sites] + [node_tables[c.path] for c in node.children]
            node_tables[node.path] = sum(parts)
            out.append(torch.logsumexp(node_tables[node.path] + log_w, dim=2))
        return tuple(out)

    if rows_per_chunk >= B:
        pieces = [chunk(0, B)]
    else:
        logger.debug("tree_marginals: pairwise tables in chunks of %d rows", rows_per_chunk)
        pieces = [
            checkpoint(chunk, start, min(start + rows_per_chunk, B), use_reentrant=False)
            if torch.is_grad_enabled()
            else chunk(start, min(start + rows_per_chunk, B))
            for start in range(0, B, rows_per_chunk)
        ]
    outputs = iter([torch.cat(parts, dim=1) for parts in zip(*pieces)])
    result = TreeMarginals({}, {}, {}, {})
    for name in names:
        result.variables[name] = next(outputs)
        if name in prior_fns:
            result.prior_variables[name] = next(outputs)
            result.prior_sites[name] = next(outputs)
    for node in reversed(nodes):
        result.nodes[node.path] = next(outputs)
    return result
