# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The HFVAE decomposition of one evaluation (private to :mod:`pyro_hfvae.infer.hfvae`): the
total correlation of every group node relative to the prior's, what the weights add to the
ELBO, the reported terms, the one scale and mask of the latent sites in the data plate, and
the decomposition of data points whose partially observed sites are observed (labelled).
"""
import functools
import operator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch.distributions import Distribution

from pyro_hfvae.distributions.util import variable_log_prob
from pyro_hfvae.ops.mixture import tc_term_name
from pyro_hfvae.poutine.groups import GroupNode
from pyro_hfvae.poutine.plate_layout import PlateLayout


class DataSite(NamedTuple):
    """A latent site inside the data plate: both sides, the value and its log densities."""

    guide_site: dict
    model_site: dict
    value: torch.Tensor
    batch_ndim: int
    log_q: torch.Tensor  # masked as Pyro masks, unscaled
    log_p: torch.Tensor


@dataclass(frozen=True)
class Structure:
    """What :class:`HFVAELoss` reads from the structure of a model/guide pair (see :meth:`TermsELBO._analyse`)."""

    layout: PlateLayout | None
    # (name, in the data plate) of the model-only, guide-only and latent sites
    model_only: tuple[tuple[str, bool], ...]
    guide_only: tuple[tuple[str, bool], ...]
    latent: tuple[tuple[str, bool], ...]
    batch_ndims: dict  # latent site in the data plate -> batch dims of its value
    var_ndims: dict  # ... -> variable dims
    num_vars: dict  # ... -> number of variables per data point
    tree: GroupNode | None
    tc_weights: dict  # node path -> weight
    # (depth, weight, nodes) of the levels whose total correlations weigh other than 1
    weighted_levels: tuple[tuple[int, float, tuple[GroupNode, ...]], ...]
    weighted: bool  # whether the decomposition enters the loss (some weight is not 1)
    scale: float  # the one scale of the latent sites in the data plate
    per_step_scale_and_mask: bool  # tensor scales or masks there: read them at every step
    # the latent half of every site sampled with obs_mask= -> its observed half (poutine.partial_observation)
    partial: dict = field(default_factory=dict)
    # the group tree of a labelled data point: without the partially observed sites (None: no site left)
    labelled_tree: GroupNode | None = None
    # with global_batch: what the ranks must share for the collectives to match (see HFVAELoss._agree)
    summary: str = ""


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


def datum_scale_and_mask(
    layout: PlateLayout, data_sites: dict, observed: dict | None = None
) -> tuple[float, torch.Tensor | None, torch.Tensor | None]:
    """
    The one scale of the latent sites in the data plate, their ``(P, B)`` data-point mask
    (``None`` where no site has one) and the ``(P, B)`` mask of the labelled data points,
    for which the partially observed sites are observed (``None`` where there are none).

    Every latent site keeps the same data points, except the latent halves of the sites
    sampled with ``obs_mask=`` (``observed``: latent half -> the model site of its observed
    half): model and guide mask such a half alike, and its observed half keeps the data
    points it drops, so that together they keep those of the other sites; every such site
    is observed for the same data points.
    """
    observed = observed or {}
    scales, masks = {}, {}
    for name, data_site in data_sites.items():
        for side, site in (("guide", data_site.guide_site), ("model", data_site.model_site)):
            scale = site["scale"]
            if isinstance(scale, torch.Tensor):
                if scale.numel() != 1:
                    raise ValueError(
                        f"HFVAELoss expected a scalar scale on latent sites in the data plate but {side} site "
                        f"{name!r} has a scale of shape {tuple(scale.shape)}; weight data points with "
                        "poutine.mask or scale the whole model and guide"
                    )
                scale = scale.item()
            scales[(side, name)] = float(scale)
            try:
                mask = layout.data_point_mask(site, data_site.value, data_site.batch_ndim)
            except ValueError as error:
                raise ValueError(f"HFVAELoss: {side} site {name!r}: {error}") from None
            if mask is not None:
                masks[(side, name)] = mask
    if len(set(scales.values())) > 1:
        raise ValueError(
            f"HFVAELoss expected one scale for all latent sites in the data plate but got {scales}; "
            "apply poutine.scale to the whole model and guide"
        )
    whole = [key for key in scales if key[1] not in observed]
    first = next((masks[key] for key in whole if key in masks), None)
    for key in whole:  # a site without a mask keeps every data point
        mask = masks.get(key, True if first is None else torch.ones_like(first))
        if first is not None and not torch.equal(mask, first):
            raise ValueError(
                f"HFVAELoss expected the same mask on every latent site in the data plate (model and guide) "
                f"but {key[0]} site {key[1]!r} differs; apply poutine.mask (or the same .mask()) around the "
                "whole model and guide"
            )
    labelled = None
    for name, observed_site in observed.items():
        latent = masks.get(("model", name))
        if not _same_mask(masks.get(("guide", name)), latent):
            raise ValueError(
                f"HFVAELoss expected guide site {name!r}, the latent half of a site sampled with obs_mask=, to be "
                "masked as the model masks it (~obs_mask) but it is not; sample it in the guide under "
                "poutine.mask(mask=~obs_mask)"
            )
        data_site = data_sites[name]
        site_observed = layout.data_point_mask(observed_site, data_site.value, data_site.batch_ndim)
        kept = torch.ones(layout.num_particles, layout.batch_size, dtype=torch.bool, device=data_site.value.device)
        kept = kept if first is None else first
        site_observed = kept if site_observed is None else site_observed
        site_latent = kept if latent is None else latent
        if not torch.equal(site_observed | site_latent, kept):
            raise ValueError(
                f"HFVAELoss expected {name!r} and {observed_site['name']!r} (a site sampled with obs_mask=) to keep "
                "together the data points that the other latent sites keep but they do not; apply poutine.mask "
                "around the whole model and guide, not around one site"
            )
        if labelled is None:
            labelled = site_observed
        elif not torch.equal(site_observed, labelled):
            first_name = next(iter(observed.values()))["name"]
            raise ValueError(
                f"HFVAELoss expected every site sampled with obs_mask= in the data plate to be observed for the "
                f"same data points but {observed_site['name']!r} differs from {first_name!r}; "
                "pass one obs_mask (the labelled data points) to all of them"
            )
    return next(iter(scales.values())), first, labelled


def _same_mask(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None or bool((a if b is None else b).all())
    return torch.equal(a, b)


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
