# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Base class for ELBO variants that report a decomposition of the objective.
"""

import logging
from typing import Callable

import torch
from pyro import poutine
from pyro.infer.elbo import ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine import Trace
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape

from pyro_hfvae.infer.plate_layout import latent_sites

logger = logging.getLogger(__name__)

__all__ = [
    "NonFiniteLossError",
    "TermsELBO",
    "model_infer",
]


class NonFiniteLossError(FloatingPointError):
    """
    Raised when an objective evaluates to NaN or infinity; the message names the
    terms and the sample sites that are not finite.
    """


class _RecordModelInfer(Messenger):
    # poutine.replay replaces a model site's ``infer`` with the guide's; keep the model's own
    # annotations (e.g. its group) in ``msg["model_infer"]`` so that disagreements can be seen.
    def _process_message(self, msg) -> None:
        if msg["type"] == "sample":
            msg["model_infer"] = dict(msg.get("infer") or {})


def model_infer(site: dict) -> dict:
    """
    The ``infer`` dict a model site had before :func:`~pyro.poutine.replay` replaced it
    with the guide's (for model traces made by :class:`TermsELBO`).

    :param dict site: a model trace's sample site.
    :rtype: dict
    """
    return site.get("model_infer", site.get("infer") or {})


class TermsELBO(ELBO):
    """
    An :class:`~pyro.infer.ELBO` whose subclasses compute a loss and a dictionary of
    named terms per particle; this class runs the particles (sequential or
    vectorized), averages, checks that everything is finite and stores the terms as
    floats in :attr:`terms` after every evaluation.

    Subclasses implement :meth:`_particle_loss`.

    :param int num_particles: number of particles (samples) per evaluation.
    :param int max_plate_nesting: bound on nested plates (guessed when ``inf``).
    :param bool vectorize_particles: evaluate particles in one vectorized pass.
    :param bool strict_enumeration_warning: passed to :class:`~pyro.infer.ELBO`.
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
        strict_enumeration_warning: bool = True,
        retain_graph: bool | None = None,
    ) -> None:
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            strict_enumeration_warning=strict_enumeration_warning,
            retain_graph=retain_graph,
        )
        #: The last evaluation's decomposition: a dict of floats (see the subclass).
        self.terms: dict[str, float] = {}

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> tuple[Trace, Trace]:
        guide_trace = poutine.trace(guide, graph_type="flat").get_trace(*args, **kwargs)
        replayed = poutine.replay(_RecordModelInfer()(model), trace=guide_trace)
        model_trace = poutine.trace(replayed, graph_type="flat").get_trace(*args, **kwargs)
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        for trace in (guide_trace, model_trace):
            for name, site in trace.nodes.items():
                if site["type"] != "sample":
                    continue
                if site["infer"].get("enumerate"):
                    raise ValueError(
                        f"{self.loss_name} expected no enumerated sites but site {name!r} has "
                        f"infer={{'enumerate': {site['infer']['enumerate']!r}}}; use a reparameterised relaxation "
                        "(e.g. RelaxedOneHotCategorical) or TraceEnum_ELBO"
                    )
                if is_validation_enabled():
                    # Pyro's check reads only the shape of log_prob: pass a zero-size stand-in.
                    batch_shape = site["value"].shape[: site["value"].dim() - site["fn"].event_dim]
                    shape = torch.broadcast_shapes(batch_shape, site["fn"].batch_shape)
                    check_site_shape(dict(site, log_prob=torch.zeros(()).expand(shape)), self.max_plate_nesting)
        for name, site in latent_sites(guide_trace):
            if not site["fn"].has_rsample:
                raise ValueError(
                    f"{self.loss_name} expected reparameterised latent sites but guide site {name!r} has "
                    f"{type(site['fn']).__name__}, which has no rsample; use a reparameterisable distribution "
                    "(e.g. RelaxedOneHotCategorical for a discrete variable)"
                )
        return model_trace, guide_trace

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
