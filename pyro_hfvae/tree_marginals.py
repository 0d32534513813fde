# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Aggregate-posterior marginals of every variable and every node of a group tree, from one
batch, with bounded memory.
"""

import logging
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch.distributions import Distribution
from torch.utils.checkpoint import checkpoint

from pyro_hfvae.group_tree import GroupNode
from pyro_hfvae.plate_layout import PlateLayout
from pyro_hfvae.stratified_marginal import pairwise_log_prob, stratified_log_weights

logger = logging.getLogger(__name__)

__all__ = [
    "TreeMarginals",
    "tree_marginals",
]

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
    Minibatch-stratified estimates (:mod:`pyro_hfvae.stratified_marginal`) of the
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
        (``batch_shape + variable_shape``), e.g. :func:`~pyro_hfvae.variable_log_prob`.
    :param dict num_variables: site -> its number of variables per data point.
    :param dict prior_fns: site -> prior distribution, for the sites whose prior marginals
        are to be estimated by the uniform batch mixture.
    :param float pairwise_memory_mb: memory budget for the pairwise tables.
    :rtype: TreeMarginals

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro_hfvae import variable_log_prob
        >>> from pyro_hfvae.group_tree import build_group_tree
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
