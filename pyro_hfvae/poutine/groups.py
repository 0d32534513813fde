# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Named groups of latent variables.

A latent sample site belongs to a group named by ``infer={"group": name}`` or by an
enclosing :class:`group` context, on the guide site or on the model site. Nested contexts
(or a ``"/"`` in the name) make a tree of groups: ``group("style")`` around
``group("shape")`` puts a site in the sub-group ``"style/shape"``. A site in no group is
its own group, named after the site (:func:`site_groups`).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pyro.poutine import Trace
from pyro.poutine.messenger import Messenger

from pyro_hfvae.distributions.util import latent_sites

__all__ = [
    "GROUP_SEPARATOR",
    "GroupNode",
    "build_group_tree",
    "group",
    "model_infer",
    "record_model_infer",
    "site_group",
    "site_groups",
]

#: Separator between the levels of a nested group path.
GROUP_SEPARATOR = "/"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or any(not part for part in name.split(GROUP_SEPARATOR)):
        raise ValueError(f"expected a non-empty group name (levels separated by {GROUP_SEPARATOR!r}) but got {name!r}")
    return name


class group(Messenger):
    """
    Puts every sample site in its context into the named group.

    Nested contexts build a tree of groups whose total correlations the
    :class:`~pyro_hfvae.HFVAELoss` weights level by level. A site's own
    ``infer={"group": ...}`` inside the context becomes a sub-group.

    :param str name: the group's name; ``"/"`` separates levels.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro import poutine
        >>> def guide():
        ...     with group("style"):
        ...         with group("shape"):
        ...             pyro.sample("a", dist.Normal(0., 1.))
        ...         pyro.sample("b", dist.Normal(0., 1.), infer={"group": "color"})
        >>> trace = poutine.trace(guide).get_trace()
        >>> site_group(trace.nodes["a"]), site_group(trace.nodes["b"])
        ('style/shape', 'style/color')
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = _check_name(name)

    def _process_message(self, msg) -> None:
        if msg["type"] != "sample":
            return
        infer = msg.setdefault("infer", {})
        inner = infer.get("group")
        infer["group"] = self.name if inner is None else self.name + GROUP_SEPARATOR + _check_name(inner)


def site_group(site: dict) -> str | None:
    """
    The group path of a traced sample site, or ``None`` where it names none.

    :param dict site: a sample site of a :class:`~pyro.poutine.Trace`.
    :rtype: str or None
    """
    name = (site.get("infer") or {}).get("group")
    return None if name is None else _check_name(name)


class _RecordModelInfer(Messenger):
    # poutine.replay replaces a model site's ``infer`` with the guide's; keep the model's own
    # annotations (e.g. its group) in ``msg["model_infer"]`` so that disagreements can be seen.
    def _process_message(self, msg) -> None:
        if msg["type"] == "sample":
            msg["model_infer"] = dict(msg.get("infer") or {})


def record_model_infer(model: Callable) -> Callable:
    """
    Wraps ``model`` so that its sites keep their own ``infer`` dict (read by
    :func:`model_infer`) when the model is replayed on a guide trace, which replaces it
    with the guide's.

    :param callable model: a Pyro model.
    :rtype: callable
    """
    return _RecordModelInfer()(model)


def model_infer(site: dict) -> dict:
    """
    The ``infer`` dict a model site had before :func:`~pyro.poutine.replay` replaced it
    with the guide's (for models wrapped by :func:`record_model_infer`; else the site's
    ``infer``).

    :param dict site: a model trace's sample site.
    :rtype: dict
    """
    return site.get("model_infer", site.get("infer") or {})


def _own_groups(groups: Mapping[str, str | None]) -> dict[str, str]:
    # The one rule "a site in no group is its own group", with its name clash check.
    explicit = {g.split(GROUP_SEPARATOR)[0] for g in groups.values() if g is not None}
    resolved = {}
    for site, path in groups.items():
        if path is None:
            if site in explicit:
                raise ValueError(
                    f"expected site {site!r} (which names no group, so is its own group) not to share its name "
                    f"with a group, but a group {site!r} exists; rename the site or put it in that group with "
                    f"infer={{'group': {site!r}}}"
                )
            path = site
        resolved[site] = path
    return resolved


def site_groups(guide_trace: Trace, model_trace: Trace | None = None) -> dict[str, str]:
    """
    The group path of every latent site of a guide trace (:func:`~pyro_hfvae.distributions.latent_sites`),
    in execution order. A site's group is the one its guide site names or, where that names
    none, the one the model site names (:func:`model_infer`); a site in no group is its own
    group, named after the site.

    :param ~pyro.poutine.Trace guide_trace: a guide trace.
    :param ~pyro.poutine.Trace model_trace: the model replayed on it (wrapped by
        :func:`record_model_infer`), or ``None`` to read the guide only.
    :returns: site name -> group path.
    :rtype: dict
    :raises ValueError: where model and guide name different groups for a site, or a site in
        no group shares its name with a group.

    Example::

        >>> import pyro, pyro.distributions as dist
        >>> def guide():
        ...     with group("style"):
        ...         pyro.sample("a", dist.Normal(0., 1.))
        ...     pyro.sample("w", dist.Normal(0., 1.))
        >>> site_groups(pyro.poutine.trace(guide).get_trace())
        {'a': 'style', 'w': 'w'}
    """
    groups = {}
    for name, site in latent_sites(guide_trace):
        guide_group = site_group(site)
        model_group = None
        if model_trace is not None and name in model_trace.nodes:
            model_group = site_group({"infer": model_infer(model_trace.nodes[name])})
        if model_group is not None and guide_group is not None and model_group != guide_group:
            raise ValueError(
                f"expected model and guide to agree on the group of site {name!r} but the guide says "
                f"{guide_group!r} and the model says {model_group!r}; name the group on one side only"
            )
        groups[name] = guide_group if guide_group is not None else model_group
    return _own_groups(groups)


@dataclass
class GroupNode:
    """
    A node of the group tree.

    :param str path: the group path (``""`` for the root).
    :param int depth: 0 for the root, 1 for top-level groups, ...
    :param list children: sub-groups, in order of first appearance.
    :param list sites: sites whose variables are this node's own leaves.
    """

    path: str
    depth: int
    children: list["GroupNode"] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)

    def all_sites(self) -> list[str]:
        """Every site under this node."""
        return self.sites + [s for child in self.children for s in child.all_sites()]

    def internal_nodes(self) -> list["GroupNode"]:
        """This node and every node below it, parents before children."""
        return [self] + [n for child in self.children for n in child.internal_nodes()]


def build_group_tree(groups: Mapping[str, str | None]) -> GroupNode:
    """
    Builds the group tree from a mapping site -> group path (as :func:`site_groups` gives;
    ``None``: the site is its own group).

    :param dict groups: latent sites in execution order and their group paths.
    :rtype: GroupNode

    Example::

        >>> root = build_group_tree({"y": "class", "z1": "style/a", "z2": "style/b", "w": None})
        >>> [(n.path, n.sites) for n in root.internal_nodes()]
        [('', []), ('class', ['y']), ('style', []), ('style/a', ['z1']), ('style/b', ['z2']), ('w', ['w'])]
    """
    root = GroupNode("", 0)
    nodes = {"": root}
    for site, path in _own_groups(groups).items():
        parts = path.split(GROUP_SEPARATOR)
        parent = root
        for depth in range(1, len(parts) + 1):
            key = GROUP_SEPARATOR.join(parts[:depth])
            if key not in nodes:
                nodes[key] = GroupNode(key, depth)
                parent.children.append(nodes[key])
            parent = nodes[key]
        parent.sites.append(site)
    return root
