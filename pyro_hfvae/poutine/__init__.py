# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Handlers and trace structure, as :mod:`pyro.poutine` holds Pyro's: the :class:`group`
messenger that puts latent sites into named (nested) groups, the group tree read from a
trace (a site without a group is its own group), and the plate layout of a trace (which
plate indexes data points, which one particles). The objectives (:mod:`pyro_hfvae.infer`)
and the aggregate-posterior engine (:mod:`pyro_hfvae.ops`) both build on them.
"""
from pyro_hfvae.poutine.groups import GROUP_SEPARATOR, GroupNode, build_group_tree, group, site_group, site_groups
from pyro_hfvae.poutine.plate_layout import PARTICLE_PLATE, PlateLayout

__all__ = [
    "GROUP_SEPARATOR",
    "GroupNode",
    "PARTICLE_PLATE",
    "PlateLayout",
    "build_group_tree",
    "group",
    "site_group",
    "site_groups",
]
