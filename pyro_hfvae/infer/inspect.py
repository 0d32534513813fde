# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The structure of a model's latent space as a graph: root -> groups -> sites -> variables,
with the prior of every site and the weight the objective puts on every level.

This is the tree :class:`~pyro_hfvae.HFVAELoss` decomposes: the total correlation at the
root (between top-level groups) is weighted by ``beta``, that within a top-level group
(between its children) by ``gamma``, deeper ones by ``level_weights``; every variable's
dimension-wise KL has weight 1, and the mutual information term ``alpha`` sits at the root.
With a :class:`~pyro_hfvae.HITLoss` each site carries its rate weight instead.
"""
import logging
from collections.abc import Callable
from typing import Any

import networkx as nx
import torch
from pyro import poutine
from torch.distributions import Distribution, RelaxedOneHotCategorical

from pyro_hfvae.distributions.util import _unwrap, distribution_mean, latent_sites, variable_ndim
from pyro_hfvae.infer.hfvae import HFVAELoss
from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.poutine.groups import GROUP_SEPARATOR, GroupNode, build_group_tree, record_model_infer, site_groups

logger = logging.getLogger(__name__)

__all__ = [
    "describe_distribution",
    "structure_graph",
]


def _format_number(value: torch.Tensor) -> str | None:
    flat = value.detach().reshape(-1)
    if flat.numel() == 0 or not bool((flat == flat[0]).all()):
        return None
    return f"{float(flat[0]):.3g}"


def describe_distribution(fn: Distribution) -> str:
    """
    A short description of a site's distribution: its family and, where they are the same
    for every element, its parameters (``"Normal(0, 1)"``, ``"Concrete(K=3, T=0.66)"``);
    ``"Normal(conditional)"`` where they vary (a prior that depends on other latents, or a
    posterior that depends on the data).

    :param torch.distributions.Distribution fn: the distribution.
    :rtype: str

    Example::

        >>> import pyro.distributions as dist
        >>> describe_distribution(dist.Normal(torch.zeros(4), 1.).to_event(1))
        'Normal(0, 1)'
    """
    base = _unwrap(fn, independent=True)
    if isinstance(base, RelaxedOneHotCategorical):
        temperature = _format_number(base.temperature)
        uniform = _format_number(distribution_mean(base))
        probs = "" if uniform is not None else ", conditional"
        return f"Concrete(K={base.event_shape[-1]}, T={temperature}{probs})"
    name = type(base).__name__
    params = []
    for key in base.arg_constraints:
        value = base.__dict__.get(key)
        if isinstance(value, torch.Tensor):
            params.append(_format_number(value))
    if not params:
        return name
    if any(p is None for p in params):
        return f"{name}(conditional)"
    return f"{name}({', '.join(params)})"


def structure_graph(model: Callable, guide: Callable, *args, loss: Any = None, **kwargs) -> nx.DiGraph:
    """
    Traces ``guide(*args, **kwargs)`` and the model replayed on it, and builds the tree of
    the latent space: a ``"root"`` node, one node per group (paths from
    ``infer={"group": ...}``, nested with ``"/"``; a site in no group is its own group), one
    per latent site and one per variable (an element of an ``Independent`` event, or a whole
    multivariate event such as a Concrete).

    Node attributes: ``kind`` (``"root"``, ``"group"``, ``"site"``, ``"variable"``), ``label``,
    ``depth``; groups and the root have ``tc_weight`` (the weight of the total correlation
    between their children; ``None`` where there is a single child or no HFVAE loss) and the
    root ``mi_weight`` (``alpha``); sites have ``prior`` and ``posterior`` (see
    :func:`describe_distribution`), ``num_variables``, ``group`` and, with a HIT loss,
    ``rate_weight``. Edges point from parent to child.

    :param callable model: the Pyro model.
    :param callable guide: the Pyro guide.
    :param args: arguments of both (e.g. a small batch of data).
    :param loss: an :class:`~pyro_hfvae.HFVAELoss` or :class:`~pyro_hfvae.HITLoss` whose
        weights to show (``None``: no weights).
    :param kwargs: keyword arguments of both.
    :rtype: networkx.DiGraph

    Example::

        >>> from pyro_hfvae import HFVAELoss
        >>> from pyro_hfvae.models.conv_hfvae import ConvHFVAE
        >>> vae = ConvHFVAE((1, 8, 8), num_classes=3, style_dim=2)
        >>> graph = structure_graph(vae.model, vae.guide, torch.zeros(2, 1, 8, 8), loss=HFVAELoss(beta=4.0, gamma=3.0))
        >>> [graph.nodes[n]["label"] for n in graph.successors("root")]
        ['class', 'style']
        >>> graph.nodes["root"]["tc_weight"], graph.nodes["group:style"]["tc_weight"], graph.nodes["site:z"]["prior"]
        (4.0, 3.0, 'Normal(0, 1)')
    """
    with torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        replayed = poutine.replay(record_model_infer(model), trace=guide_trace)
        model_trace = poutine.trace(replayed).get_trace(*args, **kwargs)
    sites = dict(latent_sites(guide_trace))
    if not sites:
        raise ValueError("expected the guide to sample at least one latent site but it samples none")
    tree = build_group_tree(site_groups(guide_trace, model_trace))
    num_variables = {name: site["fn"].event_shape[: variable_ndim(site["fn"])].numel() for name, site in sites.items()}
    tc_weights = loss.tc_weights(tree, num_variables) if isinstance(loss, HFVAELoss) else {}
    rate_weights = loss.site_betas(guide_trace, model_trace) if isinstance(loss, HITLoss) else {}

    graph = nx.DiGraph()

    def add_group(node: GroupNode, parent: str | None) -> str:
        key = "root" if node.depth == 0 else f"group:{node.path}"
        label = "root" if node.depth == 0 else node.path.split(GROUP_SEPARATOR)[-1]
        graph.add_node(key, kind="root" if node.depth == 0 else "group", label=label, depth=node.depth,
                       path=node.path)
        if parent is not None:
            graph.add_edge(parent, key)
        for site_name in node.sites:
            add_site(site_name, key, node.depth + 1, None if node.depth == 0 else node.path)
        for child in node.children:
            add_group(child, key)
        graph.nodes[key]["tc_weight"] = tc_weights.get(node.path)
        return key

    def add_site(name: str, parent: str, depth: int, group: str | None) -> None:
        guide_fn = sites[name]["fn"]
        model_fn = model_trace.nodes[name]["fn"] if name in model_trace.nodes else None
        var_shape = guide_fn.event_shape[: variable_ndim(guide_fn)]  # num_variables[name] elements
        key = f"site:{name}"
        graph.add_node(key, kind="site", label=name, depth=depth, group=group,
                       prior=describe_distribution(model_fn) if model_fn is not None else "none",
                       posterior=describe_distribution(guide_fn), num_variables=var_shape.numel(),
                       rate_weight=rate_weights.get(name))
        graph.add_edge(parent, key)
        for index in range(var_shape.numel()):
            label = name if not var_shape else f"{name}[{index}]"
            graph.add_node(f"variable:{label}", kind="variable", label=label, depth=depth + 1, site=name,
                           index=index)
            graph.add_edge(key, f"variable:{label}")

    add_group(tree, None)
    graph.nodes["root"]["mi_weight"] = loss.alpha if isinstance(loss, HFVAELoss) else None
    return graph
