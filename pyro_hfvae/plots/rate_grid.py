# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Views of a :func:`~pyro_hfvae.training.rate_grid.rate_grid` table: the rate-rate-metric panels,
the rate-rate-distortion surface, and the loss curves that say whether the models converged.
"""

import logging
import math
import os
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from pyro_hfvae.plots._figure import save_figure

logger = logging.getLogger(__name__)

__all__ = [
    "best_row",
    "is_diagonal",
    "last_part_change",
    "plot_rate_grid",
    "plot_rate_grid_convergence",
    "plot_rate_rate_distortion",
    "rate_sites",
]


def rate_sites(rows: Sequence[Mapping[str, float]]) -> list[str]:
    """
    The latent sites of a table, from its ``rate/<site>`` columns, in column order.

    :param rows: rows of :func:`~pyro_hfvae.training.rate_grid.rate_grid`.
    :rtype: list

    Example::

        >>> rate_sites([{"beta/z1": 1.0, "rate/z1": 3.0, "rate/z2": 1.0, "rate": 4.0}])
        ['z1', 'z2']
    """
    return [key[len("rate/"):] for key in rows[0] if key.startswith("rate/")] if rows else []


def is_diagonal(row: Mapping[str, float], rel_tol: float = 1e-9) -> bool:
    """
    Whether a row's weights are all equal: a plain beta-VAE setting.

    :param dict row: a row of :func:`~pyro_hfvae.training.rate_grid.rate_grid`.
    :param float rel_tol: relative tolerance of the comparison.
    :rtype: bool

    Example::

        >>> is_diagonal({"beta/z1": 0.5, "beta/z2": 0.5})
        True
        >>> is_diagonal({"beta/z1": 0.5, "beta/z2": 2.0})
        False
    """
    betas = [value for key, value in row.items() if key.startswith("beta/")]
    return all(math.isclose(b, betas[0], rel_tol=rel_tol) for b in betas)


def best_row(rows: Sequence[Mapping[str, float]], metric: str, higher_is_better: bool = True) -> Mapping[str, float]:
    """
    The row with the best value of ``metric`` (NaNs ignored).

    :param rows: the table.
    :param str metric: a column.
    :param bool higher_is_better: whether larger values are better.
    :rtype: dict

    Example::

        >>> best_row([{"psnr": 10.0}, {"psnr": 12.0}], "psnr")
        {'psnr': 12.0}
    """
    candidates = [row for row in rows if metric in row and not math.isnan(row[metric])]
    if not candidates:
        columns = sorted({key for row in rows for key in row})
        raise ValueError(f"expected rows with a value for {metric!r} but found none; columns are {columns}")
    return (max if higher_is_better else min)(candidates, key=lambda row: row[metric])


def plot_rate_grid(
    rows: Sequence[Mapping[str, float]],
    metric: str,
    *,
    sites: tuple[str, str] | None = None,
    higher_is_better: bool = True,
    ax=None,
    cmap: str = "viridis",
    title: str | None = None,
    axis_scale: str = "symlog",
):
    """
    Scatter of two sites' rates (nats) coloured by ``metric``, as in the paper's
    rate-rate-distortion panels. Settings with all weights equal (the beta-VAE diagonal)
    are circled in red; the best setting is starred.

    :param rows: rows of :func:`~pyro_hfvae.training.rate_grid.rate_grid`.
    :param str metric: the column that sets the colour.
    :param sites: the sites on the x and y axes (default: the first two ``rate/<site>`` columns).
    :param bool higher_is_better: which end of ``metric`` is best.
    :param ax: a matplotlib Axes (a new figure's when ``None``).
    :param str cmap: colour map.
    :param str title: the panel's title (default: ``metric``).
    :param str axis_scale: scale of both rate axes: ``"symlog"`` (linear below 0.1 nats,
        logarithmic above: rates span orders of magnitude and collapsed layers sit near 0),
        ``"linear"`` or ``"log"``.
    :returns: the Axes.
    """
    # Imported here so that the library imports without a display backend.
    import matplotlib.pyplot as plt

    if sites is None:
        rate_columns = rate_sites(rows)
        if len(rate_columns) < 2:
            raise ValueError(f"expected rows with at least two rate/<site> columns but got {rate_columns}")
        sites = (rate_columns[0], rate_columns[1])
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.6))
    x = [row[f"rate/{sites[0]}"] for row in rows]
    y = [row[f"rate/{sites[1]}"] for row in rows]
    values = [row.get(metric, float("nan")) for row in rows]
    points = ax.scatter(x, y, c=values, cmap=cmap, s=60, edgecolors="none")
    ax.figure.colorbar(points, ax=ax, label=metric)
    diagonal = [i for i, row in enumerate(rows) if is_diagonal(row)]
    ax.scatter(
        [x[i] for i in diagonal],
        [y[i] for i in diagonal],
        s=140,
        facecolors="none",
        edgecolors="red",
        linewidths=1.2,
        label="beta-VAE (all betas equal)",
    )
    best = best_row(rows, metric, higher_is_better)
    ax.scatter(
        [best[f"rate/{sites[0]}"]],
        [best[f"rate/{sites[1]}"]],
        marker="*",
        s=260,
        c="black",
        label=f"best {metric}",
    )
    for set_scale in (ax.set_xscale, ax.set_yscale):
        set_scale(axis_scale, **({"linthresh": 0.1} if axis_scale == "symlog" else {}))
    ax.set_xlabel(f"rate of {sites[0]} (nats)")
    ax.set_ylabel(f"rate of {sites[1]} (nats)")
    ax.set_title(metric if title is None else title)
    return ax


def _loss_curve(row: Mapping[str, float]) -> list[float]:
    parts = sorted((int(key.split("/")[1]), value) for key, value in row.items() if key.startswith("train_loss/"))
    return [value for _, value in parts]


def last_part_change(row: Mapping[str, float]) -> float:
    """
    How much a setting's training loss still fell over the last part of training: the relative
    decrease from the second-to-last to the last part of its loss curve (``train_loss/<k>``
    columns of :func:`~pyro_hfvae.training.rate_grid.rate_grid`), in percent. Near 0: converged.

    :param dict row: a row with at least two ``train_loss/<k>`` columns.
    :rtype: float

    Example::

        >>> last_part_change({"train_loss/1": 120.0, "train_loss/2": 101.0, "train_loss/3": 100.0})
        1.0
    """
    curve = _loss_curve(row)
    if len(curve) < 2:
        raise ValueError(f"expected a row with at least two train_loss/<k> columns but got {len(curve)}; "
                         "train with at least two steps")
    return 100.0 * (curve[-2] - curve[-1]) / abs(curve[-1])


def plot_rate_grid_convergence(rows: Sequence[Mapping[str, float]], *, path: str | os.PathLike | None = None) -> Figure:
    """
    Whether the models of a rate grid converged: left, every setting's training loss curve
    (``train_loss/<k>``, the mean over each equal part of training) divided by its last value;
    right, :func:`last_part_change` over the grid of the first two sites' weights.

    :param rows: rows of :func:`~pyro_hfvae.training.rate_grid.rate_grid`.
    :param path: where to save the PNG.
    :returns: the figure.
    :rtype: matplotlib.figure.Figure

    Example::

        >>> rows = [{"beta/z1": b1, "beta/z2": b2, "train_loss/1": 200.0, "train_loss/2": 100.0 + b1}
        ...         for b1 in (0.1, 1.0) for b2 in (0.1, 1.0)]
        >>> [ax.get_xlabel() for ax in plot_rate_grid_convergence(rows).axes[:2]]
        ['part of training', 'beta of z1']
    """
    sites = [key[5:] for key in rows[0] if key.startswith("beta/")] if rows else []
    if len(sites) < 2:
        raise ValueError(f"expected rows with at least two beta/<site> columns but got {sites}")
    first, second = (sorted({row[f"beta/{site}"] for row in rows}) for site in sites[:2])
    change = np.full((len(second), len(first)), np.nan)
    figure = Figure(figsize=(9.6, 3.8))
    curves_ax, grid_ax = figure.subplots(1, 2)
    for row in rows:
        curve = np.asarray(_loss_curve(row))
        parts = np.arange(1, len(curve) + 1) / len(curve)
        curves_ax.plot(parts, curve / curve[-1], color="tab:blue", alpha=0.35, linewidth=0.8)
        change[second.index(row[f"beta/{sites[1]}"]), first.index(row[f"beta/{sites[0]}"])] = last_part_change(row)
    curves_ax.axhline(1.0, color="black", linewidth=0.6)
    curves_ax.set_xlabel("part of training")
    curves_ax.set_ylabel("training loss / its last value")
    curves_ax.set_title(f"loss curves of {len(rows)} settings")
    image = grid_ax.imshow(change, origin="lower", cmap="magma_r", aspect="auto")
    figure.colorbar(image, ax=grid_ax, label="loss decrease over the last part (%)")
    for axis_ticks, labels in ((grid_ax.set_xticks, first), (grid_ax.set_yticks, second)):
        axis_ticks(range(len(labels)), [f"{b:.2g}" for b in labels])
    grid_ax.tick_params(axis="x", labelrotation=60)
    grid_ax.set_xlabel(f"beta of {sites[0]}")
    grid_ax.set_ylabel(f"beta of {sites[1]}")
    grid_ax.set_title("still falling at the end?")
    figure.tight_layout()
    save_figure(figure, path)
    return figure


def plot_rate_rate_distortion(
    rows: Sequence[Mapping[str, float]],
    best: Mapping[str, Mapping[str, float]] | None = None,
    *,
    sites: tuple[str, str] | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """
    The paper's rate-rate-distortion view: the distortion of every setting over its two layers'
    rates, as a surface through the grid's points, with the beta-VAE settings (all weights equal)
    circled in red and the settings of ``best`` (e.g. each use's optimum) marked.

    :param rows: rows of :func:`~pyro_hfvae.training.rate_grid.rate_grid`.
    :param best: label -> row to mark (e.g. ``{"reconstruction": best_row(rows, "psnr")}``).
    :param sites: the sites on the two rate axes (default: the first two ``rate/<site>`` columns).
    :param path: where to save the PNG.
    :returns: the figure.
    :rtype: matplotlib.figure.Figure

    Example::

        >>> rows = [{"beta/z1": b1, "beta/z2": b2, "rate/z1": 10 / b1, "rate/z2": 5 / b2,
        ...          "distortion": 100 - 2 / b1 - 1 / b2} for b1 in (0.5, 1.0, 2.0) for b2 in (0.5, 1.0, 2.0)]
        >>> figure = plot_rate_rate_distortion(rows, {"best": rows[0]})
        >>> figure.axes[0].get_zlabel()
        'distortion (nats)'
    """
    rate_columns = rate_sites(rows)
    sites = sites or tuple(rate_columns[:2])
    if len(sites) < 2:
        raise ValueError(f"expected rows with at least two rate/<site> columns but got {rate_columns}")
    x, y, z = (np.array([row[key] for row in rows]) for key in (f"rate/{sites[0]}", f"rate/{sites[1]}", "distortion"))
    figure = Figure(figsize=(6.4, 5.2))
    ax = figure.add_subplot(projection="3d")
    if len(rows) >= 3:
        ax.plot_trisurf(x, y, z, cmap="viridis", alpha=0.45, linewidth=0.2, edgecolor="grey")
    ax.scatter(x, y, z, c="black", s=6)
    diagonal = np.array([is_diagonal(row) for row in rows])
    ax.scatter(x[diagonal], y[diagonal], z[diagonal], s=90, facecolors="none", edgecolors="red", linewidths=1.5,
               depthshade=False, label="beta-VAE (all betas equal)")
    for (label, row), marker in zip((best or {}).items(), "*^sPD"):
        ax.scatter([row[f"rate/{sites[0]}"]], [row[f"rate/{sites[1]}"]], [row["distortion"]], marker=marker, s=160,
                   depthshade=False, label=label)
    ax.set_xlabel(f"rate of {sites[0]} (nats)")
    ax.set_ylabel(f"rate of {sites[1]} (nats)")
    ax.set_zlabel("distortion (nats)")
    ax.view_init(elev=24, azim=-128)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    save_figure(figure, path)
    return figure
