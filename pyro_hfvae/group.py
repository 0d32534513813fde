# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Named groups of latent variables.

A latent sample site belongs to a group named by ``infer={"group": name}`` or by an
enclosing :class:`group` context. Nested contexts (or a ``"/"`` in the name) make a
tree of groups: ``group("style")`` around ``group("shape")`` puts a site in the
sub-group ``"style/shape"``.
"""

from pyro.poutine.messenger import Messenger

__all__ = [
    "GROUP_SEPARATOR",
    "group",
    "site_group",
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
