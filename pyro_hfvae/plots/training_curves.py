# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""The objective's terms over training, from a run's log."""
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from pyro_hfvae.plots._figure import save_figure

__all__ = [
    "plot_training_curves",
]

_NOT_TERMS = {"step", "seconds", "event", "message"}


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window // 2, values[0]), values, np.full(window - 1 - window // 2, values[-1])])
    return np.convolve(padded, kernel, mode="valid")


def plot_training_curves(records: Sequence[Mapping[str, float]], *, terms: Sequence[str] | None = None,
                         path: str | os.PathLike | None = None) -> Figure:
    """
    One panel per term of the objective against the training step (raw values thin, a
    moving average thick), from the records of a run's ``log.jsonl``.

    :param records: dicts with ``step`` and the terms (records with an ``event`` are skipped).
    :param terms: the terms to show (default: every term whose name has no ``/``, i.e. not
        per site or group; Pyro's ``loss``, which is scaled to the data-set size, only where
        there is no other term).
    :param path: where to save the PNG.
    :returns: the figure.
    :rtype: matplotlib.figure.Figure

    Example::

        >>> records = [{"step": s, "loss": 10.0 / s, "elbo": -1.0 / s, "kl": 1.0} for s in range(1, 20)]
        >>> [ax.get_title() for ax in plot_training_curves(records).axes]
        ['elbo', 'kl']
    """
    records = [r for r in records if "event" not in r and "step" in r]
    if not records:
        raise ValueError("expected at least one logged step but got none; train for at least log_every steps")
    if terms is None:
        seen = dict.fromkeys(k for r in records for k in r if k not in _NOT_TERMS and "/" not in k)
        terms = [k for k in seen if k != "loss"] or ["loss"]
    steps = np.array([r["step"] for r in records], dtype=float)
    columns = min(3, len(terms))
    rows = math.ceil(len(terms) / columns)
    figure = Figure(figsize=(3.4 * columns, 2.3 * rows + 0.3))
    axes = figure.subplots(rows, columns, squeeze=False).reshape(-1)
    window = max(1, len(records) // 40)
    for ax, term in zip(axes, terms):
        values = np.array([r.get(term, np.nan) for r in records], dtype=float)
        ax.plot(steps, values, color="C0", alpha=0.3, linewidth=0.7)
        ax.plot(steps, _smooth(values, window), color="C0", linewidth=1.5)
        ax.set_title(term, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("step", fontsize=8)
        if term == "loss" and np.all(values > 0) and values.max() / values.min() > 100:
            ax.set_yscale("log")
    for ax in axes[len(terms):]:
        figure.delaxes(ax)
    figure.tight_layout()
    save_figure(figure, path)
    return figure
