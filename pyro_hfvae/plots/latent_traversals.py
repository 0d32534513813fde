# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Latent traversals: what each latent variable does to the decoded image."""
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from matplotlib.figure import Figure
from torch.distributions import Independent, OneHotCategorical, RelaxedOneHotCategorical

from pyro_hfvae.infer.inference_data import decode_latents, latent_means, latent_posterior
from pyro_hfvae.plots._figure import is_image_shape, mosaic, row_centres, save_figure

logger = logging.getLogger(__name__)

__all__ = [
    "plot_latent_traversals",
]


def _is_categorical(fn) -> bool:
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return isinstance(fn, (RelaxedOneHotCategorical, OneHotCategorical))


def _descendants(model: Callable, x: torch.Tensor, sites: Sequence[str], kwargs: Mapping[str, Any]) -> dict:
    """Latent sites whose prior depends, directly or not, on each site (empty for flat models)."""
    from pyro.infer.inspect import get_dependencies

    try:
        parents = get_dependencies(model, (x,), dict(kwargs))["prior_dependencies"]
    except Exception as error:  # provenance tracking does not follow every torch operation
        logger.debug("could not find the model's dependencies (%s); traversing every site independently", error)
        return {site: set() for site in sites}
    children: dict[str, set] = {site: set() for site in parents}
    for child, its_parents in parents.items():
        for parent in its_parents:
            if parent != child and parent in children:
                children[parent].add(child)
    result = {}
    for site in sites:
        found, frontier = set(), [site]
        while frontier:
            for child in children.get(frontier.pop(), ()):
                if child not in found and child in sites:
                    found.add(child)
                    frontier.append(child)
        result[site] = found
    return result


def plot_latent_traversals(model: Any, x: torch.Tensor, *, variables: Sequence[tuple[str, int]] | None = None,
                           span: float = 3.0, num_steps: int = 9, labels: Mapping[tuple[str, int], str] | None = None,
                           model_kwargs: Mapping[str, Any] | None = None,
                           path: str | os.PathLike | None = None) -> Figure:
    """
    Latent traversals of an image model: one row per continuous latent variable, decoding
    the first image's posterior means with that variable set to ``num_steps`` values from
    ``-span`` to ``span`` (prior standard deviations of a standard Normal prior); and for a
    categorical (Concrete) site one row per category, decoding each of the first
    ``num_steps`` images with their own style and that category. Latent sites whose prior
    depends on the traversed one (lower layers of a hierarchical model) follow it through
    their prior means.

    :param model: an object with Pyro ``model(x, ...)`` and ``guide(x, ...)`` methods.
    :param torch.Tensor x: images ``(n, C, H, W)`` (``C`` 1 or 3); the first is the reference.
    :param variables: ``(site, index)`` rows to show, in order (index: the variable's position
        in the flattened event; a category for a categorical site, ``-1`` for all of its
        categories); default every variable of every site.
    :param float span: traversal range of continuous variables.
    :param int num_steps: columns.
    :param dict labels: extra text per ``(site, index)`` row, e.g. its information.
    :param dict model_kwargs: extra keyword arguments of the model and the guide.
    :param path: where to save the PNG.
    :returns: the figure.
    :rtype: matplotlib.figure.Figure
    """
    if not is_image_shape(tuple(x.shape[1:])):
        raise ValueError(f"expected images (n, 1 or 3, height, width) but got shape {tuple(x.shape)}")
    if num_steps < 2:
        raise ValueError(f"expected num_steps >= 2 but got {num_steps}")
    kwargs = dict(model_kwargs or {})
    labels = dict(labels or {})
    references = x[:num_steps]
    if len(references) < num_steps:
        references = references.repeat((num_steps + len(references) - 1) // len(references), 1, 1, 1)[:num_steps]
    reference_means = latent_means(model.guide, references, **kwargs)
    posterior = latent_posterior(model.guide, references[:1], **kwargs)
    categorical = {site for site, fn in posterior.items() if _is_categorical(fn)}
    if variables is None:
        variables = []
        for site, value in reference_means.items():
            if site in categorical:
                variables.append((site, -1))
            else:
                variables += [(site, i) for i in range(value[0].numel())]
    descendants = _descendants(model.model, references, list(reference_means), kwargs)
    rows, row_labels = [], []
    grid = torch.linspace(-span, span, num_steps, device=x.device)
    for site, index in variables:
        if site not in reference_means:
            raise ValueError(f"expected variables of the sites {list(reference_means)} but got site {site!r}")
        kept = {s: v for s, v in reference_means.items() if s not in descendants[site]}
        if site in categorical:
            num_categories = reference_means[site].shape[-1]
            for category in (range(num_categories) if index == -1 else [index]):
                values = dict(kept)
                values[site] = torch.nn.functional.one_hot(
                    torch.full((num_steps,), category, device=x.device), num_categories).to(x.dtype)
                rows.append(decode_latents(model.model, values, references, **kwargs))
                extra = labels.get((site, category), labels.get((site, -1), ""))
                row_labels.append(f"{site} = {category}" + (f"  {extra}" if extra else ""))
            continue
        values = {s: v[:1].expand(num_steps, *v.shape[1:]).clone() for s, v in kept.items()}
        flat = values[site].reshape(num_steps, -1)
        if not 0 <= index < flat.shape[1]:
            raise ValueError(f"expected an index in [0, {flat.shape[1]}) for site {site!r} but got {index}")
        flat[:, index] = grid
        values[site] = flat.reshape(values[site].shape)
        reference = references[:1].expand(num_steps, *references.shape[1:])
        rows.append(decode_latents(model.model, values, reference, **kwargs))
        extra = labels.get((site, index), "")
        row_labels.append(f"{site}[{index}]" + (f"  {extra}" if extra else ""))
    if not rows:
        raise ValueError("expected at least one variable to traverse but got none")
    images = torch.stack(rows)
    height = images.shape[-2]
    figure = Figure(figsize=(0.55 * num_steps + 2.2, 0.55 * len(rows) + 0.8))
    ax = figure.add_subplot()
    ax.imshow(mosaic(images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(row_centres(len(rows), height), row_labels, fontsize=8)
    ax.set_xticks([])
    notes = []
    if any(site not in categorical for site, _ in variables):
        notes.append(f"continuous rows: value from {-span:g} to {span:g}")
    if any(site in categorical for site, _ in variables):
        notes.append("categorical rows: one reference image per column")
    ax.set_xlabel("; ".join(notes), fontsize=8)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title("latent traversals", fontsize=10)
    save_figure(figure, path)
    return figure
