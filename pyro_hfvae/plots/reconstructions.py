# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Data, their reconstructions and samples from the prior, side by side."""
import os
from collections.abc import Mapping
from typing import Any

import torch
from matplotlib.figure import Figure
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyro_hfvae.distributions.util import distribution_mean
from pyro_hfvae.infer.inference_data import decode_latents, latent_means
from pyro_hfvae.plots._figure import is_image_shape, mosaic, row_centres, save_figure

__all__ = [
    "plot_reconstructions",
]


def _prior_samples(model, x: torch.Tensor, kwargs: Mapping[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        trace = poutine.trace(model).get_trace(x, **kwargs)
    for site in trace.nodes.values():
        if site["type"] == "sample" and site["is_observed"] and not site_is_subsample(site):
            return distribution_mean(site["fn"])
    raise ValueError("expected the model to have an observed sample site but it has none")


def plot_reconstructions(model: Any, x: torch.Tensor, *, model_kwargs: Mapping[str, Any] | None = None,
                         path: str | os.PathLike | None = None) -> Figure:
    """
    Three rows of images: the data ``x``, their reconstructions (the likelihood's mean at
    the posterior means, :func:`~pyro_hfvae.infer.inference_data.latent_means`), and the
    likelihood's mean at latents drawn from the prior.

    :param model: an object with Pyro ``model(x, ...)`` and ``guide(x, ...)`` methods.
    :param torch.Tensor x: images ``(n, C, H, W)`` with ``C`` 1 or 3.
    :param dict model_kwargs: extra keyword arguments of the model and the guide.
    :param path: where to save the PNG.
    :returns: the figure.
    :rtype: matplotlib.figure.Figure
    """
    if not is_image_shape(tuple(x.shape[1:])):
        raise ValueError(f"expected images (n, 1 or 3, height, width) but got shape {tuple(x.shape)}")
    kwargs = dict(model_kwargs or {})
    reconstructions = decode_latents(model.model, latent_means(model.guide, x, **kwargs), x, **kwargs)
    samples = _prior_samples(model.model, x, kwargs)
    images = torch.stack([x, reconstructions.reshape(x.shape), samples.reshape(x.shape)])
    figure = Figure(figsize=(0.6 * len(x) + 1.6, 2.4))
    ax = figure.add_subplot()
    ax.imshow(mosaic(images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(row_centres(3, x.shape[-2]), ["data", "reconstruction", "prior sample"], fontsize=8)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    save_figure(figure, path)
    return figure
