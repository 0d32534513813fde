# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""MIG against MIG-sup over several runs (pro-VLAE's Fig. 3)."""
import os
from collections.abc import Mapping

from matplotlib.figure import Figure

from pyro_hfvae.plots._figure import save_figure

__all__ = [
    "plot_mig_scatter",
]


def plot_mig_scatter(runs: Mapping[str, Mapping[str, float]], *, path: str | os.PathLike | None = None) -> Figure:
    """
    Scatter plot of MIG (does each factor have one code?) against MIG-sup (does each code
    have one factor?) with one labelled point per run: disentangled representations sit in
    the upper right.

    :param dict runs: run name -> its metrics (needs ``mig`` and ``mig_sup``, e.g. the
        ``metrics`` of ``metrics.json``).
    :param path: where to save the PNG.
    :returns: the figure.
    :rtype: matplotlib.figure.Figure

    Example::

        >>> figure = plot_mig_scatter({"a": {"mig": 0.1, "mig_sup": 0.2}, "b": {"mig": 0.3, "mig_sup": 0.25}})
        >>> [t.get_text() for t in figure.axes[0].texts]
        ['a', 'b']
    """
    missing = [name for name, metrics in runs.items() if "mig" not in metrics or "mig_sup" not in metrics]
    if not runs or missing:
        raise ValueError(f"expected runs with the metrics mig and mig_sup but {missing or 'none were given'} lack "
                         "them; "
                         "evaluate them on a data set with known factors (pyro-hfvae evaluate RUN)")
    figure = Figure(figsize=(4.6, 4.2))
    ax = figure.add_subplot()
    for i, (name, metrics) in enumerate(runs.items()):
        ax.scatter(metrics["mig"], metrics["mig_sup"], color=f"C{i % 10}", s=40, zorder=3)
        ax.annotate(name, (metrics["mig"], metrics["mig_sup"]), xytext=(4, 4), textcoords="offset points", fontsize=8)
    top = max(max(m["mig"], m["mig_sup"]) for m in runs.values())
    limit = max(0.1, min(1.0, top * 1.25))
    ax.set_xlim(0, limit)
    ax.set_ylim(0, limit)
    ax.plot([0, limit], [0, limit], color="0.8", linewidth=0.8, zorder=1)
    ax.set_xlabel("MIG")
    ax.set_ylabel("MIG-sup")
    ax.set_title("disentanglement of the runs", fontsize=10)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)
    return figure
