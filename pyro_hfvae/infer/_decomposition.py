# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The HFVAE decomposition of one evaluation (private to :mod:`pyro_hfvae.infer.hfvae`): the
total correlation of every group node relative to the prior's, what the weights add to the
ELBO, the reported terms of a particle, and the decomposition of data points whose partially
observed sites are observed (labelled).
"""
import functools
import operator
from typing import Any, NamedTuple

import torch
from pyro.distributions.util import scale_and_mask
from torch.distributions import Distribution

from pyro_hfvae.distributions.util import variable_log_prob
from pyro_hfvae.infer._structure import Structure
from pyro_hfvae.ops.mixture import tc_term_name
from pyro_hfvae.poutine.groups import GroupNode
from pyro_hfvae.poutine.plate_layout import PlateLayout


class Pieces(NamedTuple):
    """Marginals of one evaluation: ``(P, B, V)`` per site, ``(P, B)`` per node or site."""

    q_var: dict
    q_node: dict
    prior_var: dict
    prior_site: dict


def sum_parts(parts: Any) -> Any:
    """``sum(parts)`` without the ``0 +`` (one tensor op and autograd node fewer; the same values)."""
    return functools.reduce(operator.add, parts) if parts else 0


def node_tc(node: GroupNode, pieces: Pieces, log_p: torch.Tensor | None) -> torch.Tensor:
    """The total correlation between the children of ``node``, relative to the prior's."""
    q_var, q_node, prior_var, prior_site = pieces

    def p_node(n: GroupNode) -> torch.Tensor:
        return log_p if n.depth == 0 else sum_parts([prior_site[s] for s in n.all_sites()])

    q_children = [q_var[s].sum(-1) for s in node.sites] + [q_node[c.path] for c in node.children]
    p_children = [prior_var[s].sum(-1) for s in node.sites] + [p_node(c) for c in node.children]
    return (q_node[node.path] - sum_parts(q_children)) - (p_node(node) - sum_parts(p_children))


def weighted_extra(
    alpha: float, layout: PlateLayout, structure: Structure, data: dict, pieces: Pieces
) -> torch.Tensor | None:
    """
    Per data point ``(P, B)``, what the weights add to the ELBO's loss:
    ``(alpha - 1) * mutual_info + sum_level (weight - 1) * tc_level``; ``None`` where every weight is 1.
    """
    extra = None
    if alpha != 1.0:
        log_q = sum_parts([layout.per_datum(s.log_q) for s in data.values()])
        extra = (alpha - 1.0) * (log_q - pieces.q_node[""])
    log_p = None
    for depth, weight, nodes in structure.weighted_levels:
        if depth == 0:
            log_p = sum_parts([layout.per_datum(s.log_p) for s in data.values()])
        tc = None
        for node in nodes:
            tc_node = node_tc(node, pieces, log_p)
            tc = tc_node if tc is None else tc + tc_node
        tc = (weight - 1.0) * tc
        extra = tc if extra is None else extra + tc
    return extra


def decomposition(
    beta: float, gamma: float, layout: PlateLayout, structure: Structure, data: list, pieces: Pieces
) -> dict:
    """Every piece of the decomposition, per data point ``(P, B)``, for the terms."""
    tree, tc_weights = structure.tree, structure.tc_weights
    log_q = sum(layout.per_datum(lq) for lq, _ in data)
    log_p = sum(layout.per_datum(lp) for _, lp in data)
    q_var, q_node, prior_var, _ = pieces
    tc_levels = {0: torch.zeros_like(log_q), 1: torch.zeros_like(log_q)}
    weights = {0: beta, 1: gamma}
    per_group = {}
    for node in tree.internal_nodes():
        if node.path not in tc_weights:
            continue
        tc = node_tc(node, pieces, log_p)
        tc_levels[node.depth] = tc_levels.get(node.depth, 0.0) + tc
        weights[node.depth] = tc_weights[node.path]
        if node.depth >= 1:
            per_group[f"tc_within/{node.path}"] = tc
    for group in tree.children:
        per_group[f"dimwise_kl/{group.path}"] = sum((q_var[s] - prior_var[s]).sum(-1) for s in group.all_sites())
    return {
        "log_q": log_q,
        "log_p": log_p,
        "mutual_info": log_q - q_node[""],
        "tc_levels": tc_levels,
        "weights": weights,
        "dimwise_kl": sum(per_group[f"dimwise_kl/{g.path}"] for g in tree.children),
        "per_group": per_group,
    }


def decomposition_terms(alpha: float, decomposition: dict | None, batch_mean) -> dict:
    """The decomposition's terms, and ``weighted_kl``: the weighted sum the objective subtracts."""
    if decomposition is None:
        zero = torch.zeros(())
        names = ["mutual_info", "tc_between", "tc_within", "dimwise_kl", "kl", "weighted_kl"]
        return dict.fromkeys(names, zero)
    terms = {"mutual_info": batch_mean(decomposition["mutual_info"])}
    weighted = alpha * terms["mutual_info"]
    for depth, tc in decomposition["tc_levels"].items():
        name = tc_term_name(depth)
        terms[name] = batch_mean(tc)
        weighted = weighted + decomposition["weights"][depth] * terms[name]
    terms["dimwise_kl"] = batch_mean(decomposition["dimwise_kl"])
    terms["kl"] = batch_mean(decomposition["log_q"] - decomposition["log_p"])
    terms["weighted_kl"] = weighted + terms["dimwise_kl"]
    for key, value in decomposition["per_group"].items():
        terms[key] = batch_mean(value)
    return terms


def label_log_prob(fn: Distribution, value: torch.Tensor, masked: bool = True) -> torch.Tensor:
    """
    The log density of an observed label ``value`` under ``fn`` (summed over the event):
    a Concrete scores the categorical probability of the label's class (its argmax), whose
    relaxed density at a vertex of the simplex is degenerate; other distributions their density.
    """
    return variable_log_prob(fn, value, 0, masked=masked, concrete="argmax")


def merge_labelled(
    pieces: Pieces, restricted: Pieces | None, labelled: torch.Tensor, split: tuple[str, ...]
) -> Pieces:
    """
    The marginals of the latent sites of each data point: ``pieces`` (every site latent) for
    the unlabelled points; for the labelled ones (``labelled``, ``(P, B)``) the node marginals
    of ``restricted`` (the tree without the observed ``split`` sites; a node without a latent
    site is 0) and 0 for the observed sites' own marginals, so that every term of the
    decomposition is over the latent sites only.
    """
    q_var, prior_var, prior_site = dict(pieces.q_var), dict(pieces.prior_var), dict(pieces.prior_site)
    for name in split:
        q_var[name] = torch.where(labelled[..., None], 0.0, q_var[name])
        prior_var[name] = torch.where(labelled[..., None], 0.0, prior_var[name])
        prior_site[name] = torch.where(labelled, 0.0, prior_site[name])
    q_node = {}
    for path, value in pieces.q_node.items():
        kept = 0.0 if restricted is None or path not in restricted.q_node else restricted.q_node[path]
        q_node[path] = torch.where(labelled, kept, value)
    return Pieces(q_var, q_node, prior_var, prior_site)


def particle_terms(
    alpha: float,
    beta: float,
    gamma: float,
    supervised_weight: float,
    layout: PlateLayout | None,
    structure: Structure,
    scored: list,
    data: list,
    pieces: Pieces | None,
    mask: torch.Tensor | None,
    global_parts: list,
    supervised: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The terms of one particle, from its detached tensors (see :attr:`HFVAELoss.terms`)."""

    def batch_mean(t: Any, row_mask: torch.Tensor | None = None) -> torch.Tensor:
        # Per data point, averaged over the batch (masked-out points count as 0), summed over particles.
        if not isinstance(t, torch.Tensor):
            return torch.zeros(())
        return (t if row_mask is None else torch.where(row_mask, t, 0.0)).mean(-1).sum(0)

    log_likelihood, auxiliary = 0.0, 0.0
    for sign, log_prob, site_mask in scored:
        unscaled = sign * layout.per_datum(scale_and_mask(log_prob, 1.0, site_mask))
        if sign > 0:
            log_likelihood = log_likelihood + unscaled
        else:
            auxiliary = auxiliary + unscaled
    parts = None if pieces is None else decomposition(beta, gamma, layout, structure, data, pieces)
    # The observed and auxiliary sites carry their own masks; the latent ones the data-point mask.
    terms = {"log_likelihood": batch_mean(log_likelihood)}
    terms.update(decomposition_terms(alpha, parts, lambda t: batch_mean(t, mask)))
    terms["elbo"] = terms["log_likelihood"] - terms["kl"]
    terms["objective"] = terms["log_likelihood"] - terms.pop("weighted_kl")
    if isinstance(auxiliary, torch.Tensor):
        terms["auxiliary"] = batch_mean(auxiliary)
        terms["elbo"] = terms["elbo"] + terms["auxiliary"]
        terms["objective"] = terms["objective"] + terms["auxiliary"]
    if supervised is not None:
        terms["supervised"] = batch_mean(supervised, mask)
        terms["objective"] = terms["objective"] + supervised_weight * terms["supervised"]
    if global_parts:
        terms["global_elbo"] = sum(global_parts)
    return terms
