# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The rate-rate-metric view of a :func:`~pyro_hfvae.training.rate_grid.rate_grid` table.
"""

import logging
import math
from typing import Mapping, Sequence

logger = logging.getLogger(__name__)

__all__ = [
    "best_row",
    "is_diagonal",
    "plot_rate_grid",
]


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
        rate_columns = [key[5:] for key in rows[0] if key.startswith("rate/")] if rows else []
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
