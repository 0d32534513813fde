# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Base class for ELBO variants that report a decomposition of the objective.
"""

import logging
import math
from typing import Any, Callable

import numpy as np
import torch
from pyro import poutine
from pyro.infer.elbo import ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine import Trace
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape
from torch.distributions import Bernoulli, Categorical, Distribution, OneHotCategorical, RelaxedOneHotCategorical

from pyro_hfvae.distributions.util import _unwrap, latent_sites
from pyro_hfvae.infer.groups import record_model_infer

logger = logging.getLogger(__name__)

__all__ = [
    "NonFiniteLossError",
    "TermsELBO",
    "check_dataset_size",
    "check_weight",
    "guide_only_sites",
]


class NonFiniteLossError(FloatingPointError):
    """
    Raised when an objective evaluates to NaN or infinity; the message names the
    terms and the sample sites that are not finite.
    """


def _reparameterisation_fix(fn: Distribution) -> str:
    base = _unwrap(fn, independent=True)
    if getattr(type(base), "has_rsample", False) is True:
        return "which has reparameterisation switched off (has_rsample_(False)); drop has_rsample_(False)"
    if isinstance(base, Bernoulli):
        return "which has no rsample; use RelaxedBernoulli(temperature, probs=...) for a binary variable"
    if isinstance(base, (Categorical, OneHotCategorical)):
        return "which has no rsample; use RelaxedOneHotCategorical(temperature, probs=...) for a categorical variable"
    return "which has no rsample; use a reparameterisable distribution"


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


class TermsELBO(ELBO):
    """
    An :class:`~pyro.infer.ELBO` whose subclasses compute a loss and a dictionary of
    named terms per particle; this class runs the particles (sequential or
    vectorized), averages, checks that everything is finite and stores the terms as
    floats in :attr:`terms` after every evaluation.

    Each particle is traced as :func:`pyro.infer.enum.get_importance_trace` traces it
    (guide, then the model replayed on it, Pyro's model/guide and shape checks, subsample
    sites pruned), but without computing Pyro's log densities: the subclasses score every
    site with :func:`~pyro_hfvae.distributions.variable_log_prob`, which stays finite for
    low-temperature Concrete sites where ``Distribution.log_prob`` does not. Every latent
    site of the guide must be a latent site of the model and the other way round;
    auxiliary (``infer={"is_auxiliary": True}``) and observed guide sites contribute minus
    their guide log density, as in :class:`~pyro.infer.Trace_ELBO`
    (:func:`guide_only_sites`). Latent sites must be reparameterised.

    Subclasses implement :meth:`_particle_loss`.

    :param int num_particles: number of particles (samples) per evaluation.
    :param int max_plate_nesting: bound on nested plates (guessed when ``inf``).
    :param bool vectorize_particles: evaluate particles in one vectorized pass.
    :param bool retain_graph: passed to ``backward`` in :meth:`loss_and_grads`.
    """

    #: Name used in error messages.
    loss_name = "TermsELBO"

    def __init__(
        self,
        *,
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        vectorize_particles: bool = False,
        retain_graph: bool | None = None,
    ) -> None:
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            retain_graph=retain_graph,
        )
        #: The last evaluation's decomposition: a dict of floats (see the subclass).
        self.terms: dict[str, float] = {}

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> tuple[Trace, Trace]:
        try:
            guide_trace = poutine.trace(guide, graph_type="flat").get_trace(*args, **kwargs)
            replayed = poutine.replay(record_model_infer(model), trace=guide_trace)
            model_trace = poutine.trace(replayed, graph_type="flat").get_trace(*args, **kwargs)
        except ZeroDivisionError as error:
            # Pyro's subsampled plate divides by the batch size.
            raise ValueError(
                f"{self.loss_name} expected a non-empty batch but tracing the model and guide divided by zero "
                f"({error}), as a plate with an empty subsample does; pass at least one data point"
            ) from error
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        for trace in (guide_trace, model_trace):
            for name, site in trace.nodes.items():
                if site["type"] == "sample":
                    self._check_site(name, site)
        self._check_sites_match(model_trace, guide_trace)
        return model_trace, guide_trace

    def _check_site(self, name: str, site: dict) -> None:
        if site["infer"].get("enumerate"):
            raise ValueError(
                f"{self.loss_name} expected no enumerated sites but site {name!r} has "
                f"infer={{'enumerate': {site['infer']['enumerate']!r}}}; use a reparameterised relaxation "
                "(e.g. RelaxedOneHotCategorical) or TraceEnum_ELBO"
            )
        base = _unwrap(site["fn"], independent=True)
        if isinstance(base, RelaxedOneHotCategorical) and not isinstance(base.temperature, torch.Tensor):
            raise ValueError(
                f"{self.loss_name} expected the temperature of the Concrete at site {name!r} to be a tensor but "
                f"got {type(base.temperature).__name__} {base.temperature!r}; pass torch.tensor({base.temperature!r})"
            )
        if is_validation_enabled():
            # Pyro's check reads only the shape of log_prob: pass a zero-size stand-in.
            batch_shape = site["value"].shape[: site["value"].dim() - site["fn"].event_dim]
            shape = torch.broadcast_shapes(batch_shape, site["fn"].batch_shape)
            check_site_shape(dict(site, log_prob=torch.zeros(()).expand(shape)), self.max_plate_nesting)

    def _check_sites_match(self, model_trace: Trace, guide_trace: Trace) -> None:
        guide_latent = dict(latent_sites(guide_trace))
        for name, site in guide_latent.items():
            if name not in model_trace.nodes:
                raise ValueError(
                    f"{self.loss_name} expected every latent site of the guide in the model but guide site {name!r} "
                    "is not in the model; sample it in the model too or, if it only helps the guide, mark it "
                    "infer={'is_auxiliary': True}"
                )
        for name, site in latent_sites(model_trace):
            if name not in guide_latent:
                raise ValueError(
                    f"{self.loss_name} expected every latent site of the model in the guide but model site {name!r} "
                    "is not sampled by the guide; sample it in the guide (or observe it in the model)"
                )
        for name, site in list(guide_latent.items()) + guide_only_sites(guide_trace):
            if not site["is_observed"] and not site["fn"].has_rsample:
                raise ValueError(
                    f"{self.loss_name} expected reparameterised guide sites but site {name!r} has "
                    f"{type(site['fn']).__name__}, {_reparameterisation_fix(site['fn'])}"
                )

    def _particle_loss(
        self, model_trace: Trace, guide_trace: Trace
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """
        Loss and terms of one traced particle (or of all, when vectorized).

        :returns: ``(loss, terms, site_log_probs)``: the loss summed over the particles in
            the trace; each term summed over those particles; and every site's log density
            tensor, used only to name the culprit when something is not finite.
        """
        raise NotImplementedError

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """
        :returns: a differentiable estimate of the loss, averaged over particles.
        :rtype: torch.Tensor
        """
        loss = 0.0
        terms: dict[str, torch.Tensor] = {}
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle_loss, particle_terms, site_log_probs = self._particle_loss(model_trace, guide_trace)
            loss = loss + particle_loss
            for name, value in particle_terms.items():
                terms[name] = terms.get(name, 0.0) + value.detach()
        loss = loss / self.num_particles
        names = list(terms)
        values = torch.stack([torch.as_tensor(terms[n], dtype=loss.dtype, device=loss.device) for n in names])
        # One host sync for the loss check and all the terms.
        values = torch.cat([loss.detach().reshape(1), values / self.num_particles]).tolist()
        self.terms = dict(zip(names, values[1:]))
        if not torch.isfinite(torch.tensor(values)).all():
            self._raise_non_finite(values[0], site_log_probs)
        return loss

    def _raise_non_finite(self, loss: float, site_log_probs: dict[str, torch.Tensor]) -> None:
        bad_terms = [n for n, v in self.terms.items() if not torch.isfinite(torch.tensor(v))]
        bad_sites = [n for n, lp in site_log_probs.items() if not torch.isfinite(lp.detach()).all()]
        raise NonFiniteLossError(
            f"{self.loss_name} expected a finite loss but got {loss}; non-finite terms: {bad_terms or 'none'}; "
            f"sites with non-finite log densities: {bad_sites or 'none'}. Check the inputs and the "
            "distributions' parameters of those sites (e.g. a scale that reached 0, a NaN input, a too "
            "high learning rate)"
        )

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """
        :returns: an estimate of the loss (the negative objective).
        :rtype: float
        """
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """
        Computes the loss and backpropagates it into the parameters.

        :returns: an estimate of the loss.
        :rtype: float
        """
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return loss.item()


def check_weight(owner: str, name: str, value: Any) -> float:
    """
    A loss weight as a float: a Python or NumPy number or a 0-d tensor, finite and ``>= 0``.

    :param str owner: the loss's name, for error messages.
    :param str name: the weight's name.
    :param value: the weight.
    :rtype: float
    :raises TypeError: for a bool or anything not a number.
    :raises ValueError: for a negative or non-finite weight.
    """
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise TypeError(
            f"{owner} expected the weight {name} to be a number but got the bool {value!r}; pass 0.0 or 1.0"
        )
    if isinstance(value, torch.Tensor) and value.dim() != 0:
        raise TypeError(
            f"{owner} expected the weight {name} to be a number but got a tensor of shape {tuple(value.shape)}; "
            "pass a 0-d tensor or a float"
        )
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        weight = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{owner} expected the weight {name} to be a number but got {value!r}") from None
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(
            f"{owner} expected the weight {name} to be finite and >= 0 but got {weight}; terms are penalised, "
            "not rewarded"
        )
    return weight


def check_dataset_size(owner: str, value: Any) -> int | None:
    """
    ``dataset_size`` as an int: ``None`` or a positive Python or NumPy int.

    :param str owner: the loss's name, for error messages.
    :param value: the data-set size.
    :rtype: int or None
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner} expected dataset_size to be an int but got {value!r}; pass e.g. dataset_size=60000")
    if value < 1:
        raise ValueError(f"{owner} expected dataset_size to be a positive int but got {value}")
    return int(value)
