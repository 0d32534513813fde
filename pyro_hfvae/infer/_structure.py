# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The structure of a model/guide pair as :class:`~pyro_hfvae.infer.hfvae.HFVAELoss` reads it
(private): which latent sites lie in the data plate, their group tree, variables and
total-correlation weights, the partially observed sites, and the one scale and mask of the
latent sites in the data plate. :meth:`~pyro_hfvae.infer.terms_elbo.TermsELBO._structure`
analyses each structure once.
"""
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import torch
from pyro.poutine import Trace

from pyro_hfvae.distributions.util import distribution_mask, variable_ndim
from pyro_hfvae.infer._global_batch import structure_summary
from pyro_hfvae.infer.weight_bound import warn_unbounded
from pyro_hfvae.poutine.groups import GroupNode, build_group_tree, site_groups
from pyro_hfvae.poutine.partial_observation import prune_group_tree, split_sites
from pyro_hfvae.poutine.plate_layout import PlateLayout
from pyro_hfvae.poutine.trace_structure import SiteRoles

if TYPE_CHECKING:
    from pyro_hfvae.infer.hfvae import HFVAELoss


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
    """What :class:`HFVAELoss` reads from the structure of a model/guide pair (see :func:`analyse_structure`)."""

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
    # with global_batch: what the ranks must share for the collectives to match (_global_batch.structure_summary)
    summary: str = ""


def analyse_structure(loss: "HFVAELoss", model_trace: Trace, guide_trace: Trace, roles: SiteRoles) -> Structure:
    """
    Everything about a model/guide pair that depends only on its structure, under ``loss``'s
    settings (``HFVAELoss._analyse``); raises the structural errors.
    """
    layout = PlateLayout.from_trace(
        guide_trace,
        model_trace=model_trace,
        data_plate=loss.data_plate,
        dataset_size=loss.dataset_size,
        loss_name=loss.loss_name,
    )

    def local(site: dict) -> bool:
        return layout is not None and layout.in_data_plate(site)

    latent = tuple((n, local(guide_trace.nodes[n])) for n in roles.latent)
    data_sites = {}
    for name, is_local in latent:
        if is_local:
            guide_site = guide_trace.nodes[name]
            value = guide_site["value"]
            batch_ndim = value.dim() - guide_site["fn"].event_dim
            data_sites[name] = DataSite(guide_site, model_trace.nodes[name], value, batch_ndim, None, None)
    tree, tc_weights, levels, scale, per_step = None, {}, (), 1.0, False
    var_ndims, num_vars, labelled_tree = {}, {}, None
    partial = split_sites(model_trace, data_sites)
    if data_sites:
        # With global_batch and a known N, B and N >= B are checked on the global batch (_particle_loss).
        if not loss.global_batch or layout.dataset_size is None:
            layout.require_marginals(loss.loss_name)
        groups = site_groups(guide_trace, model_trace)
        tree = build_group_tree({name: groups[name] for name in data_sites})
        var_ndims = {name: variable_ndim(s.guide_site["fn"]) for name, s in data_sites.items()}
        num_vars = {name: num_variables(layout, s, var_ndims[name]) for name, s in data_sites.items()}
        tc_weights = loss.tc_weights(tree, num_vars)
        labelled_tree = prune_group_tree(tree, partial) if partial else None
        nodes = tree.internal_nodes()
        priors = {n: s.model_site["fn"] for n, s in data_sites.items()}
        warn_unbounded(loss.loss_name, loss._warned_unbounded, priors, nodes, tc_weights, num_vars)
        by_depth: dict[int, list] = {}
        for node in nodes:
            if node.path in tc_weights and tc_weights[node.path] != 1.0:
                by_depth.setdefault(node.depth, []).append(node)
        levels = tuple((d, tc_weights[ns[0].path], tuple(ns)) for d, ns in sorted(by_depth.items()))
        per_step = any(
            has_mask(site) or isinstance(site["scale"], torch.Tensor)
            for s in data_sites.values()
            for site in (s.guide_site, s.model_site)
        )
        if not per_step:
            scale, _, _ = datum_scale_and_mask(layout, data_sites)
    weighted = loss.alpha != 1.0 or bool(levels)
    summary = ""
    if loss.global_batch:
        summary = structure_summary(loss, layout, data_sites, var_ndims, num_vars, tree, labelled_tree, partial,
                                    weighted)
    return Structure(
        layout=layout,
        model_only=tuple((n, local(model_trace.nodes[n])) for n in roles.model_only),
        guide_only=tuple((n, local(guide_trace.nodes[n])) for n in roles.guide_only),
        latent=latent,
        batch_ndims={name: s.batch_ndim for name, s in data_sites.items()},
        var_ndims=var_ndims,
        num_vars=num_vars,
        tree=tree,
        tc_weights=tc_weights,
        weighted_levels=levels,
        weighted=weighted,
        scale=scale,
        per_step_scale_and_mask=per_step,
        partial=partial,
        labelled_tree=labelled_tree,
        summary=summary,
    )


def has_mask(site: dict) -> bool:
    """
    Whether a site carries a mask that :meth:`PlateLayout.data_point_mask` reads: a
    ``poutine.mask`` or a ``Distribution.mask`` (:func:`distribution_mask`; no values read).
    """
    return (site["mask"] is not None and site["mask"] is not True) or distribution_mask(site["fn"]) is not None


def num_variables(layout: PlateLayout, data_site: DataSite, var_ndim: int) -> int:
    """The number of variables per data point of a latent site in the data plate."""
    in_plates = data_site.value.shape[: data_site.batch_ndim].numel() // (layout.num_particles * layout.batch_size)
    return in_plates * data_site.guide_site["fn"].event_shape[:var_ndim].numel()


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
