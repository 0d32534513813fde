# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
r"""
Log marginals of the aggregate posterior, a mixture of per-point posteriors: the one engine
behind the objectives, the metrics and :func:`~pyro_hfvae.ops.aggregate_log_marginals`.

The aggregate posterior :math:`q(v) = \sum_{m} w_m\, q(v \mid x_m)` of any set of
variables ``v`` (a variable, a site, a group of the group tree, all latents) is evaluated at
samples :math:`v_s` as

.. math::

    \log \hat q(v_s) = \log \sum_{m} W_{sm}\, q(v_s \mid x_m),

with the mixture weights ``W`` an argument: the *minibatch-stratified* weights of a batch of
``B`` points from a data set of ``N`` (:func:`~pyro_hfvae.ops.stratified_log_weights`, for the objectives),

.. math::

    W_{bb} = \frac{1}{N},\quad W_{bb'} = \frac{N-1}{N(B-1)}\ (b' \ne b),

whose rows sum to one (``N == B`` gives uniform weights ``1/B``), or uniform weights over a
whole data set (for the metrics). A node's density at :math:`(s, m)` is the product of its
children's, so one pairwise table per site (:func:`~pyro_hfvae.ops.pairwise_log_prob`)
serves every level of the tree; a site may instead come with a fused kernel
(:class:`~pyro_hfvae.ops.fused_marginals.FusedTable`) that returns its per-variable marginals
and its site table at once. Tables are built in chunks of rows that fit
``pairwise_memory_mb``; when gradients are on, each chunk is recomputed in the backward pass
(:func:`torch.utils.checkpoint.checkpoint`) instead of being kept.

References

[1] Structured Disentangled Representations,
    Babak Esmaeili, Hao Wu, Sarthak Jain, et al. (AISTATS 2019)
[2] Isolating Sources of Disentanglement in Variational Autoencoders,
    Ricky T. Q. Chen, Xuechen Li, Roger Grosse, David Duvenaud (NeurIPS 2018)
"""

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch.utils.checkpoint import checkpoint

from pyro_hfvae.ops.fused_marginals import FusedTable
from pyro_hfvae.ops.logsumexp import safe_logsumexp
from pyro_hfvae.poutine.groups import GroupNode, build_group_tree, site_group

logger = logging.getLogger(__name__)

__all__ = [
    "LogMarginals",
    "check_memory_budget",
    "groups_to_tree",
    "mixture_log_marginals",
    "tc_term_name",
]

# Bytes per (row, component) pair, in units of the dtype's size: log_prob's elementwise
# temporaries (a few per event element) plus the reduced targets, their weighted copies and exp.
_TEMPORARIES_PER_ELEMENT = 6
_TEMPORARIES_PER_TARGET = 3


def tc_term_name(depth: int) -> str:
    """
    The name :class:`~pyro_hfvae.HFVAELoss` gives the total correlation at ``depth`` of the group tree.

    Example::

        >>> [tc_term_name(d) for d in range(4)]
        ['tc_between', 'tc_within', 'tc_within_2', 'tc_within_3']
    """
    return {0: "tc_between", 1: "tc_within"}.get(depth, f"tc_within_{depth}")


def groups_to_tree(sites: Sequence[str], groups: Mapping[str, Sequence[str]] | None = None) -> GroupNode:
    """
    The group tree (:func:`~pyro_hfvae.poutine.groups.build_group_tree`) of a mapping
    group path -> sites; a site in no group is a group of its own, as in
    :class:`~pyro_hfvae.HFVAELoss`. Paths nest with ``"/"``.

    :param list sites: every site, in order.
    :param dict groups: group path -> list of its sites (default: every site its own group).
    :rtype: ~pyro_hfvae.poutine.groups.GroupNode

    Example::

        >>> root = groups_to_tree(["a", "b", "c"], {"style/pose": ["a"], "style/shape": ["b"]})
        >>> [(n.path, n.sites) for n in root.internal_nodes()]
        [('', []), ('style', []), ('style/pose', ['a']), ('style/shape', ['b']), ('c', ['c'])]
    """
    site_groups: dict[str, str | None] = {}
    for path, members in (groups or {}).items():
        if isinstance(members, str):
            raise TypeError(f"expected group {path!r} to list site names but got the string {members!r}; "
                            f"write [{members!r}]")
        members = list(members)
        if not members:
            raise ValueError(f"expected group {path!r} to list at least one site but got none")
        for site in members:
            if site not in sites:
                raise ValueError(f"expected the sites of group {path!r} among the sites {list(sites)} but got {site!r}")
            if site in site_groups:
                raise ValueError(f"expected every site in at most one group but {site!r} is in "
                                 f"{site_groups[site]!r} and {path!r}")
            site_groups[site] = site_group({"infer": {"group": path}})  # checks the path
    site_groups.update({site: None for site in sites if site not in site_groups})
    return build_group_tree(site_groups)


@dataclass
class LogMarginals:
    """
    Log marginals of the aggregate posterior at each sample, as ``(..., S)`` tensors
    (``S`` samples; leading dims such as particles as the inputs had them).

    :param dict variables: site -> ``(..., S, V)``, one column per variable of the site.
    :param dict nodes: group path -> ``(..., S)``, for every node of the group tree; the root
        ``""`` is the joint of all sites (:attr:`joint`).
    :param dict sites: site -> ``(..., S)``, where asked for.
    :param GroupNode tree: the group tree of :attr:`nodes` (``None`` where none was given).
    """

    variables: dict
    nodes: dict = field(default_factory=dict)
    sites: dict = field(default_factory=dict)
    tree: GroupNode | None = None

    @property
    def joint(self) -> torch.Tensor:
        """:math:`\\log \\hat q(z_s)`, the root of the tree."""
        return self.nodes[""]

    def map(self, fn: Callable[..., torch.Tensor], *others: "LogMarginals") -> "LogMarginals":
        """
        ``fn`` applied to every tensor, with the same entry of each of ``others`` as further arguments.

        Example::

            >>> a = LogMarginals({"z": torch.zeros(2, 1)}, {"": torch.zeros(2)})
            >>> a.map(torch.add, a.map(lambda t: t + 1)).joint
            tensor([1., 1.])
        """

        def each(name: str) -> dict:
            return {k: fn(v, *(getattr(o, name)[k] for o in others)) for k, v in getattr(self, name).items()}

        return LogMarginals(each("variables"), each("nodes"), each("sites"), self.tree)

    def total_correlations(self) -> dict[str, torch.Tensor]:
        """
        Group path -> ``(..., S)`` total correlation between the node's children (its sites'
        variables and its sub-groups), :math:`\\log \\hat q(z_{node}) - \\sum_c \\log \\hat q(z_c)`,
        for every node with at least two children.
        """
        if self.tree is None:
            raise ValueError("expected LogMarginals computed with a group tree but got tree=None; pass tree=")
        out = {}
        for node in self.tree.internal_nodes():
            children = [self.variables[s] for s in node.sites]
            if sum(c.shape[-1] for c in children) + len(node.children) < 2:
                continue
            parts = [c.sum(-1) for c in children] + [self.nodes[c.path] for c in node.children]
            out[node.path] = self.nodes[node.path] - sum(parts)
        return out

    def tc_terms(self) -> dict[str, torch.Tensor]:
        """
        The aggregate-posterior total correlations under the names of
        :attr:`HFVAELoss.terms <pyro_hfvae.HFVAELoss>`, per sample: ``tc_between`` (root),
        ``tc_within`` (summed over top-level groups), ``tc_within_2``, ... for deeper levels,
        and ``tc_within/<path>`` for every group with at least two children. The loss
        subtracts the prior's total correlations, which are zero for factorised priors.
        """
        tcs = self.total_correlations()
        zero = torch.zeros_like(self.joint)
        terms = {tc_term_name(0): zero, tc_term_name(1): zero}
        per_group = {}
        depth = {n.path: n.depth for n in self.tree.internal_nodes()}
        for path, tc in tcs.items():
            name = tc_term_name(depth[path])
            terms[name] = terms.get(name, zero) + tc
            if depth[path] >= 1:
                per_group[f"tc_within/{path}"] = tc
        terms.update(per_group)
        return terms


def check_memory_budget(pairwise_memory_mb: float) -> float:
    """
    The memory budget for the pairwise tables, in MiB, as a float.

    :param float pairwise_memory_mb: a finite number ``> 0`` (Python or numpy number, 0-d tensor).
    :rtype: float
    :raises ValueError: for anything else.

    Example::

        >>> check_memory_budget(256)
        256.0
    """
    try:
        memory = float(pairwise_memory_mb)
    except (TypeError, ValueError, RuntimeError):
        memory = float("nan")
    if isinstance(pairwise_memory_mb, bool) or not (math.isfinite(memory) and memory > 0):
        raise ValueError(f"expected pairwise_memory_mb to be a finite number > 0 but got {pairwise_memory_mb!r}; "
                         "pass the memory budget in MiB, e.g. 1024")
    return memory


def _rows_per_chunk(num_rows: int, row_bytes: int, pairwise_memory_mb: float) -> int:
    budget = pairwise_memory_mb * 2**20
    if row_bytes > budget:
        logger.warning("pairwise_memory_mb=%g is below one row of the pairwise tables (%.3g MB); computing one "
                       "row at a time", pairwise_memory_mb, row_bytes / 2**20)
    return max(1, min(num_rows, int(budget // max(row_bytes, 1))))


def mixture_log_marginals(
    tables: Mapping[str, Callable[[slice], torch.Tensor] | FusedTable],
    size: tuple[int, int, int],
    num_variables: Mapping[str, int],
    tree: GroupNode | None = None,
    *,
    log_weights: Callable[[slice], torch.Tensor] | float = 0.0,
    sites: bool = False,
    num_elements: Mapping[str, int] | None = None,
    dtype: torch.dtype = torch.float32,
    pairwise_memory_mb: float = 1024.0,
) -> LogMarginals:
    r"""
    :math:`\log \sum_m W_{sm}\, q(v_s \mid x_m)` for every variable, site and node of ``tree``
    (see the module docstring), from pairwise tables computed a chunk of rows at a time.

    :param dict tables: site -> ``rows -> (P, len(rows), M, V)`` pairwise log densities
        (``[p, s, m, v] = log q(v_s | x_m)``, e.g. from
        :func:`~pyro_hfvae.ops.pairwise_log_prob`), in site order, or a
        :class:`~pyro_hfvae.ops.fused_marginals.FusedTable` that gives the site's
        per-variable marginals and site table from a fused kernel.
    :param tuple size: ``(P, S, M)``: particles, samples (rows) and components.
    :param dict num_variables: site -> ``V``.
    :param GroupNode tree: the group tree over the sites (``None``: no node marginals).
    :param log_weights: ``rows -> (len(rows), M)`` log weights :math:`\log W_{sm}`, or a
        constant added to every marginal (``0.0``: the plain ``logsumexp``).
    :param bool sites: also return each site's marginal.
    :param dict num_elements: site -> event elements per sample (default ``V``), for the
        memory estimate.
    :param torch.dtype dtype: the tables' dtype, for the memory estimate.
    :param float pairwise_memory_mb: memory budget for the tables of one chunk.
    :rtype: LogMarginals

    Example::

        >>> import math
        >>> from torch.distributions import Normal
        >>> z = torch.tensor([[0.0], [3.0]])
        >>> table = lambda rows: Normal(z.T, 1.0).log_prob(z[rows])[None, ..., None]   # (1, r, 2, 1)
        >>> out = mixture_log_marginals({"z": table}, (1, 2, 2), {"z": 1}, log_weights=-math.log(2))
        >>> out.variables["z"][0, :, 0]    # log of (N(0; 0, 1) + N(0; 3, 1)) / 2, ...
        tensor([-1.6010, -1.6010])
    """
    pairwise_memory_mb = check_memory_budget(pairwise_memory_mb)
    names = list(tables)
    nodes = [] if tree is None else tree.internal_nodes()
    num_particles, num_rows, num_components = size
    num_elements = num_variables if num_elements is None else num_elements
    num_targets = sum(num_variables[n] + 1 for n in names) + len(nodes)
    itemsize = torch.finfo(dtype).bits // 8
    row_bytes = num_particles * num_components * itemsize * (
        _TEMPORARIES_PER_ELEMENT * sum(num_elements[n] for n in names) + _TEMPORARIES_PER_TARGET * num_targets
    )
    rows_per_chunk = _rows_per_chunk(num_rows, row_bytes, pairwise_memory_mb)
    constant = None if callable(log_weights) else float(log_weights)

    def reduce(table: torch.Tensor, log_w: torch.Tensor | None) -> torch.Tensor:
        if constant is None:
            return safe_logsumexp(table + log_w, 2)
        out = safe_logsumexp(table, 2)
        return out + constant if constant else out

    def chunk(start: int, stop: int) -> tuple:
        rows = slice(start, stop)
        log_w = None if constant is not None else log_weights(rows)
        out = []
        site_tables = {}
        # id(table) -> its marginal: a node with one child and a site with one variable reuse what is reduced.
        reduced = {}

        def reduce_table(table: torch.Tensor) -> torch.Tensor:
            if id(table) not in reduced:
                reduced[id(table)] = reduce(table, log_w)
            return reduced[id(table)]

        for name in names:
            if isinstance(tables[name], FusedTable):
                variables, site_tables[name] = tables[name].marginals(rows, constant if log_w is None else log_w)
            else:
                table = tables[name](rows)
                variables = reduce(table, None if log_w is None else log_w[..., None])
                if sites or nodes:
                    site_tables[name] = table.sum(-1)
            out.append(variables)
            if name in site_tables and num_variables[name] == 1:
                reduced[id(site_tables[name])] = variables[..., 0]
            if sites:
                out.append(reduce_table(site_tables[name]))
        node_tables = {}
        for node in reversed(nodes):  # children before parents
            parts = [site_tables[s] for s in node.sites] + [node_tables[c.path] for c in node.children]
            node_tables[node.path] = parts[0] if len(parts) == 1 else sum(parts)
            out.append(reduce_table(node_tables[node.path]))
        return tuple(out)

    if rows_per_chunk >= num_rows:
        pieces = [chunk(0, num_rows)]
    else:
        logger.debug("mixture_log_marginals: pairwise tables in chunks of %d rows", rows_per_chunk)
        pieces = [
            checkpoint(chunk, start, min(start + rows_per_chunk, num_rows), use_reentrant=False)
            if torch.is_grad_enabled()
            else chunk(start, min(start + rows_per_chunk, num_rows))
            for start in range(0, num_rows, rows_per_chunk)
        ]
    outputs = iter([torch.cat(parts, dim=1) for parts in zip(*pieces)])
    result = LogMarginals({}, tree=tree)
    for name in names:
        result.variables[name] = next(outputs)
        if sites:
            result.sites[name] = next(outputs)
    for node in reversed(nodes):
        result.nodes[node.path] = next(outputs)
    result.nodes = dict(reversed(result.nodes.items()))  # parents before children, as the tree
    return result
