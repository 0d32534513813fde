# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The tree of groups over a guide's latent sites: root -> groups -> sub-groups -> variables.
"""

from dataclasses import dataclass, field

from pyro_hfvae.group import GROUP_SEPARATOR

__all__ = [
    "GroupNode",
    "build_group_tree",
]


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


def build_group_tree(site_groups: dict[str, str | None]) -> GroupNode:
    """
    Builds the group tree from a mapping site -> group path (``None``: the site is its own group).

    :param dict site_groups: latent sites in execution order and their group paths.
    :rtype: GroupNode

    Example::

        >>> root = build_group_tree({"y": "class", "z1": "style/a", "z2": "style/b", "w": None})
        >>> [(n.path, n.sites) for n in root.internal_nodes()]
        [('', []), ('class', ['y']), ('style', []), ('style/a', ['z1']), ('style/b', ['z2']), ('w', ['w'])]
    """
    explicit = {g.split(GROUP_SEPARATOR)[0] for g in site_groups.values() if g is not None}
    root = GroupNode("", 0)
    nodes = {"": root}
    for site, path in site_groups.items():
        if path is None:
            if site in explicit:
                raise ValueError(
                    f"expected site {site!r} (which names no group, so is its own group) not to share its name "
                    f"with a group, but a group {site!r} exists; rename the site or put it in that group with "
                    f"infer={{'group': {site!r}}}"
                )
            path = site
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
