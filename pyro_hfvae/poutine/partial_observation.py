# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Partially observed sample sites: what :func:`pyro.sample` makes of ``obs=`` with
``obs_mask=``.

Pyro (1.9) splits ``pyro.sample(name, fn, obs=obs, obs_mask=m)`` into three sites: an
observed ``name_observed`` under ``poutine.mask(mask=m)``, a latent ``name_unobserved``
under ``poutine.mask(mask=~m)`` (both with the same ``fn``), and a deterministic ``name``
holding ``torch.where(m, observed, unobserved)``. A guide gives the posterior of the latent
half by sampling ``name_unobserved`` under the same mask ``~m``. In a semi-supervised model
``name`` is a label, observed for the labelled data points and latent for the others.
"""
from collections.abc import Iterable

from pyro.poutine import Trace

from pyro_hfvae.poutine.groups import GroupNode, build_group_tree

__all__ = [
    "OBSERVED_SUFFIX",
    "UNOBSERVED_SUFFIX",
    "prune_group_tree",
    "split_sites",
]

#: Suffix of the observed half of a site sampled with ``obs_mask=``.
OBSERVED_SUFFIX = "_observed"
#: Suffix of its latent half.
UNOBSERVED_SUFFIX = "_unobserved"


def _is_deterministic(site: dict | None) -> bool:
    return site is not None and site["type"] == "sample" and bool((site.get("infer") or {}).get("_deterministic"))


def split_sites(model_trace: Trace, latent: Iterable[str]) -> dict[str, str]:
    """
    The latent sites that are the unobserved half of a site Pyro split for ``obs_mask=``,
    each with its observed half: ``name_unobserved`` whose model trace also holds an observed
    ``name_observed`` and a deterministic ``name``.

    :param ~pyro.poutine.Trace model_trace: a model trace.
    :param latent: names of the latent sites to look at, in order.
    :returns: latent half -> observed half, in the order of ``latent``.
    :rtype: dict

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model():
        ...     with pyro.plate("data", 3):
        ...         y = pyro.sample("y", dist.Normal(0., 1.), obs=torch.zeros(3),
        ...                         obs_mask=torch.tensor([True, False, True]))
        ...         pyro.sample("z", dist.Normal(y, 1.))
        >>> trace = pyro.poutine.trace(model).get_trace()
        >>> [name for name, site in trace.nodes.items() if site["type"] == "sample" and name != "data"]
        ['y_observed', 'y_unobserved', 'y', 'z']
        >>> split_sites(trace, ["y_unobserved", "z"])
        {'y_unobserved': 'y_observed'}
    """
    out = {}
    for name in latent:
        if not name.endswith(UNOBSERVED_SUFFIX):
            continue
        base = name[: -len(UNOBSERVED_SUFFIX)]
        observed = model_trace.nodes.get(base + OBSERVED_SUFFIX)
        if observed is not None and observed["type"] == "sample" and observed["is_observed"]:
            if _is_deterministic(model_trace.nodes.get(base)):
                out[name] = base + OBSERVED_SUFFIX
    return out


def prune_group_tree(tree: GroupNode, drop: Iterable[str]) -> GroupNode | None:
    """
    The group tree without the sites ``drop`` (and the groups left empty), or ``None``
    where no site is left: the tree of the latent sites of a data point for which those
    sites are observed.

    :param GroupNode tree: a group tree (:func:`~pyro_hfvae.poutine.groups.build_group_tree`).
    :param drop: sites to leave out.
    :rtype: GroupNode or None

    Example::

        >>> tree = build_group_tree({"y": "class", "z": "style", "w": "style"})
        >>> [(n.path, n.sites) for n in prune_group_tree(tree, ["y"]).internal_nodes()]
        [('', []), ('style', ['z', 'w'])]
    """
    drop = set(drop)
    groups = {s: node.path for node in tree.internal_nodes() for s in node.sites if s not in drop}
    return build_group_tree(groups) if groups else None
