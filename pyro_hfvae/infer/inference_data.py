# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Reading a trained model's latent space from its guide, and exporting it to ArviZ.

The helpers here trace a model's guide on a batch of observations, so that they work for
any Pyro ``model``/``guide`` pair (the library's models, or a user's), with no per-model
adapter: :func:`latent_posterior` gives each latent site's distribution
:math:`q(z_{\\text{site}} \\mid x)`, :func:`latent_means` the posterior means along the mode
path (each site's mean given the means of the sites sampled before it), and
:func:`latent_groups` the group of each site (``infer={"group": ...}``).
:func:`to_inference_data` puts the means or samples into an :class:`arviz.InferenceData`,
one variable per site, with the data set's factors as coordinates.
"""
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import Distribution

from pyro_hfvae.distributions.util import distribution_mean, latent_sites
from pyro_hfvae.poutine.groups import site_groups
from pyro_hfvae.util import forked_rng

logger = logging.getLogger(__name__)

__all__ = [
    "decode_latents",
    "latent_groups",
    "latent_means",
    "latent_posterior",
    "to_inference_data",
]


class _MeanPath(Messenger):
    # Sets every latent sample site to its distribution's mean instead of sampling it.
    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or msg["done"] or site_is_subsample(msg):
            return
        msg["value"] = distribution_mean(msg["fn"])
        msg["done"] = True


def _trace_guide(guide: Callable, x: torch.Tensor, mean_path: bool, **kwargs):
    with torch.no_grad():
        program = _MeanPath()(guide) if mean_path else guide
        trace = poutine.trace(program).get_trace(x, **kwargs)
    sites = latent_sites(trace)
    if not sites:
        raise ValueError("expected the guide to sample at least one latent site but it samples none")
    for name, site in sites:
        batch_shape = site["fn"].batch_shape
        if len(batch_shape) < 1 or batch_shape[0] != len(x):
            raise ValueError(
                f"expected every latent site to have the data as its first batch dimension, batch_shape "
                f"({len(x)}, ...), but site {name!r} has batch_shape {tuple(batch_shape)}; put the guide's "
                "local latents inside a data plate at dim -1"
            )
    return sites


def latent_posterior(guide: Callable, x: torch.Tensor, **kwargs) -> dict[str, Distribution]:
    """
    The guide's distribution :math:`q(z_{\\text{site}} \\mid x)` at every latent site, from one
    trace of ``guide(x, **kwargs)`` (sites conditioned on other latents are conditioned on
    the sampled values of those).

    :param callable guide: a Pyro guide taking a batch of observations first.
    :param torch.Tensor x: a batch of observations.
    :returns: site name -> distribution with batch shape ``(len(x),)``, in execution order.
    :rtype: dict

    Example::

        >>> from pyro_hfvae.models.conv_hfvae import ConvHFVAE
        >>> vae = ConvHFVAE((1, 8, 8), num_classes=3, style_dim=2)
        >>> {k: type(v).__name__ for k, v in latent_posterior(vae.guide, torch.zeros(4, 1, 8, 8)).items()}
        {'y': 'RelaxedOneHotCategorical', 'z': 'Independent'}
    """
    return {name: site["fn"] for name, site in _trace_guide(guide, x, False, **kwargs)}


def latent_means(guide: Callable, x: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
    """
    Posterior means of every latent site along the mode path: each site at the mean of its
    distribution given the means of the sites the guide sampled before it.

    :param callable guide: a Pyro guide taking a batch of observations first.
    :param torch.Tensor x: a batch of observations.
    :returns: site name -> tensor of shape ``(len(x),) + event_shape``, in execution order.
    :rtype: dict
    """
    return {name: site["value"] for name, site in _trace_guide(guide, x, True, **kwargs)}


def latent_groups(guide: Callable, x: torch.Tensor, **kwargs) -> dict[str, str]:
    """
    The group path (``infer={"group": ...}``, nested with ``"/"``) of every latent site of the
    guide; a site in no group is its own group, named after it
    (:func:`~pyro_hfvae.poutine.groups.site_groups`).

    :param callable guide: a Pyro guide taking a batch of observations first.
    :param torch.Tensor x: a batch of observations.
    :rtype: dict
    """
    with torch.no_grad():
        trace = poutine.trace(_MeanPath()(guide)).get_trace(x, **kwargs)
    return site_groups(trace)


class _FixLatents(Messenger):
    # Latent sites named in ``values`` take those values; the others the mean of their
    # distribution (given the values of their parents).
    def __init__(self, values: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or msg["done"] or site_is_subsample(msg):
            return
        msg["value"] = self.values[msg["name"]] if msg["name"] in self.values else distribution_mean(msg["fn"])
        msg["done"] = True


def decode_latents(model: Callable, values: Mapping[str, torch.Tensor], x: torch.Tensor, **kwargs) -> torch.Tensor:
    """
    The mean of the model's first observed site with its latent sites set to ``values``;
    latent sites not in ``values`` take their prior mean given their parents (so in a
    hierarchical model a lower layer follows the layer above it).

    :param callable model: a Pyro model taking a batch of observations first.
    :param dict values: site name -> value, batch first.
    :param torch.Tensor x: observations of the same batch size (their values are not used,
        only passed to the model).
    :returns: the observation means, shaped like ``x`` (pixel probabilities for a Bernoulli
        likelihood).
    :rtype: torch.Tensor

    Example::

        >>> from pyro_hfvae.models.conv_hfvae import ConvHFVAE
        >>> vae = ConvHFVAE((1, 8, 8), num_classes=3, style_dim=2)
        >>> decode_latents(vae.model, {"y": torch.eye(3), "z": torch.zeros(3, 2)}, torch.zeros(3, 1, 8, 8)).shape
        torch.Size([3, 1, 8, 8])
    """
    with torch.no_grad():
        trace = poutine.trace(_FixLatents(values)(model)).get_trace(x, **kwargs)
    for site in trace.nodes.values():
        if site["type"] == "sample" and site["is_observed"] and not site_is_subsample(site):
            return distribution_mean(site["fn"])
    raise ValueError("expected the model to have an observed sample site but it has none")


def _flat(value: torch.Tensor) -> np.ndarray:
    return value.detach().reshape(value.shape[0], -1).to("cpu", torch.float64).numpy()


def to_inference_data(model: Any, data: Any, *, indices: Sequence[int] | np.ndarray | None = None,
                      factors: np.ndarray | None = None, factor_names: Sequence[str] | None = None,
                      num_samples: int = 0, batch_size: int = 256, guide_kwargs: Mapping[str, Any] | None = None,
                      random_state: int = 0):
    """
    Exports the latent codes of ``data`` to an :class:`arviz.InferenceData`, so that
    ``az.summary``, ``az.plot_pair`` and ``az.plot_posterior`` work on the latent space.

    The ``posterior`` group has one variable per latent site (e.g. ``y`` and ``z``) with
    dimensions ``(chain, draw, <site>_dim)``: a *draw* is a data point and a *chain* one
    posterior sample of every point (with ``num_samples=0``, a single chain of the posterior
    means along the mode path, :func:`latent_means`). Where the factors are known they are
    coordinates along ``draw`` (one per factor, named after it) and the ``constant_data``
    group; ``item`` holds each point's index in the data set. The site groups are in the
    ``posterior`` group's ``attrs["groups"]`` as ``"site=group"`` entries.

    :param model: an object with a Pyro ``guide(x, ...)`` method (the library's models).
    :param data: a tensor of observations ``(n, ...)``, or a data set with ``observations(indices)``
        (and, for ground-truth data sets, ``factors_of`` and ``factor_names``).
    :param indices: items of a data set to export (default: all of them).
    :param numpy.ndarray factors: integer factors ``(n, num_factors)`` of a tensor ``data``.
    :param factor_names: names of the factors (default ``factor_0``, ...).
    :param int num_samples: posterior samples per data point (0: the means).
    :param int batch_size: observations per guide call.
    :param dict guide_kwargs: extra keyword arguments of the guide.
    :param int random_state: seed of the posterior samples (the global torch generator is
        left as it was).
    :rtype: arviz.InferenceData

    Example::

        >>> import arviz as az
        >>> from pyro_hfvae.models.conv_hfvae import ConvHFVAE
        >>> vae = ConvHFVAE((1, 8, 8), num_classes=3, style_dim=2)
        >>> idata = to_inference_data(vae, torch.rand(5, 1, 8, 8), factors=np.arange(5)[:, None],
        ...                           factor_names=["digit"])
        >>> idata.posterior["z"].dims, idata.posterior["digit"].values.tolist()
        (('chain', 'draw', 'z_dim'), [0, 1, 2, 3, 4])
    """
    import arviz as az
    import xarray as xr

    guide = getattr(model, "guide", None)
    if not callable(guide):
        raise TypeError(f"expected a model with a guide(x, ...) method but got {type(model).__name__}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"expected num_samples to be an int >= 0 but got {num_samples!r}")
    guide_kwargs = dict(guide_kwargs or {})
    item_index = None
    if isinstance(data, (torch.Tensor, np.ndarray)):
        observations = torch.as_tensor(data)
        if indices is not None:
            raise ValueError("expected indices only with a data set; index the tensor instead (data[indices])")
        batches = list(observations.split(batch_size))
        num_points = len(observations)
    elif callable(getattr(data, "observations", None)):
        item_index = np.arange(len(data)) if indices is None else np.asarray(indices, dtype=np.int64)
        num_points = len(item_index)
        batches = [data.observations(item_index[start:start + batch_size])
                   for start in range(0, num_points, batch_size)]
        if factors is None and callable(getattr(data, "factors_of", None)):
            factors = data.factors_of(item_index)
            factor_names = factor_names or getattr(data, "factor_names", None)
    else:
        raise TypeError(f"expected data to be a tensor of observations or a data set with observations(indices) "
                        f"but got {type(data).__name__}")
    if num_points == 0:
        raise ValueError("expected at least one data point but got none")
    if factors is not None:
        factors = np.asarray(factors)
        if factors.ndim != 2 or len(factors) != num_points:
            raise ValueError(f"expected factors of shape ({num_points}, num_factors) but got {factors.shape}")
        factor_names = list(factor_names or [f"factor_{k}" for k in range(factors.shape[1])])
        if len(factor_names) != factors.shape[1]:
            raise ValueError(f"expected {factors.shape[1]} factor names but got {factor_names}")

    chains: list[dict[str, list[np.ndarray]]] = []
    shapes: dict[str, tuple[int, ...]] = {}
    with forked_rng(seed=random_state, device=batches[0].device):
        for chain in range(max(num_samples, 1)):
            values: dict[str, list[np.ndarray]] = {}
            for x in batches:
                sites = _trace_guide(guide, x, num_samples == 0, **guide_kwargs)
                for name, site in sites:
                    values.setdefault(name, []).append(_flat(site["value"]))
                    shapes[name] = tuple(site["value"].shape[1:])
            chains.append(values)
        groups = latent_groups(guide, batches[0], **guide_kwargs)
    variables, coords = {}, {"chain": np.arange(len(chains)), "draw": np.arange(num_points)}
    for name, shape in shapes.items():
        stacked = np.stack([np.concatenate(chain[name]) for chain in chains])  # (chain, draw, flat)
        if len(shape) <= 1:
            dims = ("chain", "draw", f"{name}_dim")
            stacked = stacked.reshape(len(chains), num_points, -1)
        else:
            dims = ("chain", "draw") + tuple(f"{name}_dim_{i}" for i in range(len(shape)))
            stacked = stacked.reshape((len(chains), num_points) + shape)
        variables[name] = (dims, stacked)
    if item_index is not None:
        coords["item"] = ("draw", item_index)
    constant = None
    if factors is not None:
        for k, factor in enumerate(factor_names):
            coords[factor] = ("draw", factors[:, k])
        constant = xr.Dataset({factor: (("draw",), factors[:, k]) for k, factor in enumerate(factor_names)},
                              coords={"draw": np.arange(num_points)})
    posterior = xr.Dataset(variables, coords=coords)
    posterior.attrs["groups"] = [f"{site}={group}" for site, group in groups.items()]
    posterior.attrs["kind"] = "samples" if num_samples else "means"
    return az.InferenceData(posterior=posterior, **({"constant_data": constant} if constant is not None else {}))
