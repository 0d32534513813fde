# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Density helpers for the objectives and the metrics: per-variable log densities (Pyro's
``Masked``/``Expanded``/``Independent`` wrappers unwrapped), the numerically stable
Concrete log density, and the soft value of a straight-through sample.
"""
from pyro_hfvae.distributions.util import concrete_log_prob, soft_value, variable_log_prob, variable_ndim

__all__ = [
    "concrete_log_prob",
    "soft_value",
    "variable_log_prob",
    "variable_ndim",
]
