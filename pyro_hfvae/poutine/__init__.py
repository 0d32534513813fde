# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Handlers and trace structure, as :mod:`pyro.poutine` holds Pyro's: the :class:`group`
messenger that puts latent sites into named (nested) groups, the group tree read from a
trace (a site without a group is its own group), the plate layout of a trace (which
plate indexes data points, which one particles), the messenger that keeps a Concrete
sample's exact logarithm (:class:`ConcreteLogValueMessenger`), and the structure of a model/guide pair
(site roles and the key under which the objectives cache their analysis). The objectives (:mod:`pyro_hfvae.infer`)
and the aggregate-posterior engine (:mod:`pyro_hfvae.ops`) both build on them.
"""
from pyro_hfvae.poutine.concrete_log_value import ConcreteLogValueMessenger
from pyro_hfvae.poutine.groups import GROUP_SEPARATOR, GroupNode, build_group_tree, group, site_group, site_groups
from pyro_hfvae.poutine.plate_layout import PARTICLE_PLATE, PlateLayout
from pyro_hfvae.poutine.trace_structure import SiteRoles, guide_only_sites, trace_structure_key

__all__ = [
    "ConcreteLogValueMessenger",
    "GROUP_SEPARATOR",
    "GroupNode",
    "PARTICLE_PLATE",
    "PlateLayout",
    "SiteRoles",
    "build_group_tree",
    "group",
    "guide_only_sites",
    "site_group",
    "site_groups",
    "trace_structure_key",
]
