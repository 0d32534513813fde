# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The structure of a model/guide pair, read without touching a tensor's values: the roles of
its sample sites, and a hashable key under which an objective caches its analysis of them.
"""
from dataclasses import dataclass
from typing import Any

import torch
from pyro.poutine import Trace
from torch.distributions import Distribution, Independent, RelaxedOneHotCategorical

from pyro_hfvae.distributions.util import latent_sites
from pyro_hfvae.poutine.groups import model_infer

__all__ = [
    "SiteRoles",
    "guide_only_sites",
    "trace_structure_key",
]


def guide_only_sites(guide_trace: Trace) -> list[tuple[str, dict]]:
    """
    The guide's sample sites that are not latent sites of the model: auxiliary sites
    (``infer={"is_auxiliary": True}``) and observed sites. As in
    :class:`~pyro.infer.Trace_ELBO`, each contributes minus its guide log density.

    :param ~pyro.poutine.Trace guide_trace: a guide trace (subsample sites pruned).
    :rtype: list
    """
    latent = {name for name, _ in latent_sites(guide_trace)}
    return [(n, s) for n, s in guide_trace.nodes.items() if s["type"] == "sample" and n not in latent]


def _fn_key(fn: Distribution) -> tuple:
    # The wrapper chain (types, reinterpreted dims, a Concrete's temperature type) and the
    # top-level shapes: what the structural checks and the variable layout read.
    # (A plate's subsample site has a Pyro Distribution without shapes.)
    key = [getattr(fn, "has_rsample", None), getattr(fn, "batch_shape", None), getattr(fn, "event_shape", None)]
    while fn is not None:
        key.append(type(fn))
        if isinstance(fn, Independent):
            key.append(fn.reinterpreted_batch_ndims)
        elif isinstance(fn, RelaxedOneHotCategorical):
            key.append(type(fn.temperature))
        fn = getattr(fn, "base_dist", None)
    return tuple(key)


def _mask_key(mask: Any) -> Any:
    return mask if mask is None or isinstance(mask, bool) else ("tensor", tuple(mask.shape))


def _scale_key(scale: Any) -> Any:
    return ("tensor", tuple(scale.shape)) if isinstance(scale, torch.Tensor) else scale


def trace_structure_key(trace: Trace) -> tuple:
    """
    A cheap, hashable signature of a trace's structure: for every sample site, in execution
    order, its name, whether it is observed, its distribution's wrapper chain, type and
    shapes, the value's shape, dtype and device, its plates (name, dim, size, full size),
    the ``infer`` entries the losses read (``group``, also the model's own, ``is_auxiliary``,
    ``enumerate``), and the kind of its mask and scale (a float scale by value, a tensor
    mask or scale by shape). Two traces with the same key are analysed alike by
    :class:`~pyro_hfvae.infer.TermsELBO`; nothing in it reads a tensor's values, so computing it never
    synchronises with a device.

    :param ~pyro.poutine.Trace trace: a model or guide trace.
    :rtype: tuple

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def guide(n):
        ...     with pyro.plate("data", n):
        ...         pyro.sample("z", dist.Normal(torch.zeros(n), 1.0))
        >>> key = lambda n: trace_structure_key(pyro.poutine.trace(guide).get_trace(n))
        >>> key(3) == key(3), key(3) == key(4)
        (True, False)
    """
    out = []
    for name, site in trace.nodes.items():
        if site["type"] != "sample":
            continue
        infer = site["infer"] or {}
        value = site["value"]
        out.append(
            (
                name,
                site["is_observed"],
                _fn_key(site["fn"]),
                (value.shape, value.dtype, value.device) if isinstance(value, torch.Tensor) else type(value),
                tuple((f.name, f.dim, f.size, f.full_size) for f in site["cond_indep_stack"]),
                infer.get("group"),
                infer.get("is_auxiliary"),
                infer.get("enumerate"),
                model_infer(site).get("group") if "model_infer" in site else None,
                _mask_key(site["mask"]),
                _scale_key(site["scale"]),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class SiteRoles:
    """
    The roles of the sample sites of a model/guide pair (subsample sites left out), in
    execution order.

    :param tuple latent: the latent sites (:func:`~pyro_hfvae.distributions.latent_sites` of the guide).
    :param tuple guide_only: the guide's auxiliary and observed sites (:func:`guide_only_sites`).
    :param tuple model_only: the model's sample sites that are not latent sites of the
        guide (normally the observed ones).
    """

    latent: tuple[str, ...]
    guide_only: tuple[str, ...]
    model_only: tuple[str, ...]
