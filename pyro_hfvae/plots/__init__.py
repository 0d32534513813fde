# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Figures of trained models and training runs (matplotlib :class:`~matplotlib.figure.Figure`
objects, no pyplot state; saved as PNG files written atomically).
"""
from pyro_hfvae.plots.latent_traversals import plot_latent_traversals
from pyro_hfvae.plots.mig_scatter import plot_mig_scatter
from pyro_hfvae.plots.rate_grid import plot_rate_grid, plot_rate_grid_convergence, plot_rate_rate_distortion
from pyro_hfvae.plots.reconstructions import plot_reconstructions
from pyro_hfvae.plots.structure_graph import plot_structure_graph
from pyro_hfvae.plots.training_curves import plot_training_curves
from pyro_hfvae.plots.variable_information import plot_variable_information

__all__ = [
    "plot_latent_traversals",
    "plot_mig_scatter",
    "plot_rate_grid",
    "plot_rate_grid_convergence",
    "plot_rate_rate_distortion",
    "plot_reconstructions",
    "plot_structure_graph",
    "plot_training_curves",
    "plot_variable_information",
]
