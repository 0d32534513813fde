# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""I(x; z_d) per latent variable, sorted: which variables carry information and which are pruned."""
import math
import os
from collections.abc import Collection, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pyro_hfvae.metrics.information import PRUNED_NATS
from pyro_hfvae.plots._figure import save_figure

__all__ = [
    "plot_variable_information",
]


def plot_variable_information(information: Mapping[str, Sequence[float] | float], *,
                              discrete_sites: Collection[str] = (), num_data: int | None = None,
                              pruned_below: float = PRUNED_NATS, path: str | os.PathLike | None = None) -> Figure:
    """
    Bar chart of the mutual information :math:`I(x; z_d)` of every latent variable, sorted
    in decreasing order, as in the HFVAE paper's Fig. 4: variables the objective pruned
    (below ``pruned_below`` nats) show as empty slots at the right, and the variables of
    categorical (Concrete) sites are hatched and labelled.

    :param dict information: site -> I(x; z_d) of each of its variables (nats), e.g.
        ``metrics.json``'s ``information.variables``.
    :param discrete_sites: sites whose variable is categorical (marked).
    :param int num_data: the number of data points of the estimate; draws the ceiling
        :math:`\\log N` that estimates saturate at.
    :param float pruned_below: threshold (nats) under which a variable counts as pruned.
    :param path: where to save the PNG.
    :returns: the figure.
    :rtype: matplotlib.figure.Figure

    Example::

        >>> figure = plot_variable_information({"y": [1.1], "z": [2.0, 0.01, 3.2]}, discrete_sites=["y"])
        >>> [t.get_text() for t in figure.axes[0].get_xticklabels()]
        ['z[2]', 'z[0]', 'y', 'z[1]']
    """
    bars = []
    for site, values in information.items():
        values = np.atleast_1d(np.asarray(values, dtype=float)).reshape(-1)
        for index, value in enumerate(values):
            label = site if len(values) == 1 and site in discrete_sites else f"{site}[{index}]"
            bars.append((value, label, site))
    if not bars:
        raise ValueError("expected the information of at least one variable but got none")
    bars.sort(key=lambda bar: -bar[0])
    sites = list(dict.fromkeys(site for _, _, site in bars))
    colors = {site: f"C{i % 10}" for i, site in enumerate(sorted(sites))}
    figure = Figure(figsize=(max(4.0, 0.42 * len(bars) + 1.6), 3.4))
    ax = figure.add_subplot()
    positions = np.arange(len(bars))
    for position, (value, label, site) in zip(positions, bars):
        discrete = site in discrete_sites
        ax.bar(position, value, color=colors[site], hatch="//" if discrete else None,
               edgecolor="black" if discrete else colors[site], linewidth=0.8)
        if discrete:
            ax.annotate("categorical", (position, value), xytext=(0, 3), textcoords="offset points", ha="center",
                        fontsize=7)
    ax.set_xticks(positions, [label for _, label, _ in bars], rotation=90 if len(bars) > 16 else 45, fontsize=8)
    ax.set_ylabel("I(x; z_d)  [nats]")
    pruned = sum(value < pruned_below for value, _, _ in bars)
    ax.set_title(f"information per latent variable ({pruned} of {len(bars)} below {pruned_below:g} nats: pruned)",
                 fontsize=9)
    if num_data:
        ax.axhline(math.log(num_data), color="0.4", linestyle="--", linewidth=0.8)
        ax.annotate(f"log N = {math.log(num_data):.2f} (ceiling)", (len(bars) - 0.5, math.log(num_data)),
                    xytext=(0, 3), textcoords="offset points", ha="right", fontsize=7, color="0.3")
    ax.axhline(pruned_below, color="tab:red", linestyle=":", linewidth=0.8)
    handles = [Patch(facecolor=colors[site], hatch="//" if site in discrete_sites else None,
                     label=site + (" (categorical)" if site in discrete_sites else "")) for site in sorted(sites)]
    ax.legend(handles=handles, fontsize=8, loc="center right")
    ax.set_xlim(-0.6, len(bars) - 0.4)
    top = max(value for value, _, _ in bars)
    ax.set_ylim(min(0.0, min(value for value, _, _ in bars)), max(top, math.log(num_data) if num_data else 0) * 1.15
                or 1.0)
    figure.tight_layout()
    save_figure(figure, path)
    return figure
