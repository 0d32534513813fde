# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Base class for ELBO variants that report a decomposition of the objective.
"""

import logging
import math
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np
import torch
from pyro import poutine
from pyro.infer.elbo import ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine import Trace
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    OneHotCategorical,
    RelaxedOneHotCategorical,
)

from pyro_hfvae.distributions.util import (
    CONCRETE_SCORINGS,
    _unwrap,
    concrete_log_value,
    latent_sites,
    log_space_concrete,
    soft_value,
)
from pyro_hfvae.poutine.concrete_log_value import ConcreteLogValueMessenger
from pyro_hfvae.poutine.groups import record_model_infer
from pyro_hfvae.poutine.partial_observation import split_sites
from pyro_hfvae.poutine.trace_structure import SiteRoles, guide_only_sites, trace_structure_key

logger = logging.getLogger(__name__)

__all__ = [
    "NonFiniteLossError",
    "TermsELBO",
    "check_dataset_size",
    "check_weight",
    "log_space_sites",
]

#: How many trace structures a loss keeps analysed (e.g. the full and the last, smaller batch).
_MAX_STRUCTURES = 8


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


class TermsELBO(ELBO):
    """
    An :class:`~pyro.infer.ELBO` whose subclasses compute a loss and a dictionary of
    named terms per particle; this class runs the particles (sequential or
    vectorized), averages, checks that the loss is finite and keeps the terms, as floats
    in :attr:`terms`, after every evaluation.

    **Structure cache.** What depends only on the structure of the traces (the sites'
    roles, the plate layout, the group tree, resolved weights, and every check that reads
    no values: reparameterisation, site shapes, model/guide agreement, group and name
    clashes) is analysed once per structure, keyed by :func:`trace_structure_key` of
    both traces and the loss's settings, and reused while the key is unchanged (the last
    few structures are kept, e.g. a full and a smaller last batch). Subclasses implement
    :meth:`_analyse`.

    **Host syncs.** :meth:`differentiable_loss` does not synchronise with the device: it
    neither checks finiteness nor converts the terms. :meth:`loss` and
    :meth:`loss_and_grads` return floats as Pyro's do, and check that one float: a
    non-finite loss raises :class:`NonFiniteLossError` naming the non-finite terms and
    sites (after the backward pass, in :meth:`loss_and_grads`, so the parameters' ``.grad``
    then hold non-finite values). :attr:`terms` is computed from the evaluation's
    (detached) tensors when first read, in one conversion.

    Each particle is traced as :func:`pyro.infer.enum.get_importance_trace` traces it
    (guide, then the model replayed on it, Pyro's model/guide and shape checks, subsample
    sites pruned), but without computing Pyro's log densities: the subclasses score every
    site with :func:`~pyro_hfvae.distributions.variable_log_prob`, which stays finite for
    low-temperature Concrete sites where ``Distribution.log_prob`` does not. Every latent
    site of the guide must be a latent site of the model and the other way round;
    auxiliary (``infer={"is_auxiliary": True}``) and observed guide sites contribute minus
    their guide log density, as in :class:`~pyro.infer.Trace_ELBO`
    (:func:`guide_only_sites`). Latent sites must be reparameterised.

    Subclasses implement :meth:`_analyse` and :meth:`_particle_loss`.

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
        self._terms: dict[str, float] | None = {}
        # The last evaluation's terms, one callable per particle, until :attr:`terms` converts them.
        self._pending_terms: list[Callable[[], Mapping[str, torch.Tensor]]] = []
        self._pending_like: torch.Tensor | None = None
        self._site_log_probs: list[dict[str, torch.Tensor]] = []
        self._structures: dict[tuple, Any] = {}

    @property
    def terms(self) -> dict[str, float]:
        """
        The last evaluation's decomposition: a dict name -> float (see the subclass),
        averaged over the particles. Computed from the evaluation's tensors when first read.
        """
        if self._terms is None:
            self._terms = self._materialise_terms()
        return self._terms

    @terms.setter
    def terms(self, value: Mapping[str, float]) -> None:
        self._terms = dict(value)
        self._pending_terms = []

    def _materialise_terms(self) -> dict[str, float]:
        sums: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for particle_terms in self._pending_terms:
                for name, value in particle_terms().items():
                    sums[name] = sums.get(name, 0.0) + value
            self._pending_terms = []
            if not sums:
                return {}
            like = self._pending_like
            names = list(sums)
            values = torch.stack([torch.as_tensor(sums[n], dtype=like.dtype, device=like.device) for n in names])
            # One host sync for all the terms.
            floats = (values / self.num_particles).tolist()
        bad = [n for n, v in zip(names, floats) if not math.isfinite(v)]
        if bad:
            logger.warning("%s: non-finite terms %s", self.loss_name, bad)
        return dict(zip(names, floats))

    def _config_key(self) -> tuple:
        """The loss's settings that its structure analysis (:meth:`_analyse`) reads."""
        return ()

    def _structure(self, model_trace: Trace, guide_trace: Trace) -> Any:
        """
        The analysis of the traces' structure (:meth:`_analyse`, after the structural
        checks), from the cache where the key is unchanged.
        """
        key = (
            self._config_key(),
            is_validation_enabled(),
            self.max_plate_nesting,
            trace_structure_key(model_trace),
            trace_structure_key(guide_trace),
        )
        structure = self._structures.get(key)
        if structure is None:
            structure = self._analyse_traces(model_trace, guide_trace)
            if len(self._structures) >= _MAX_STRUCTURES:
                self._structures.pop(next(iter(self._structures)))
            self._structures[key] = structure
            logger.debug("%s: analysed a new trace structure (%d kept)", self.loss_name, len(self._structures))
        return structure

    def _analyse_traces(self, model_trace: Trace, guide_trace: Trace) -> Any:
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        for trace in (guide_trace, model_trace):
            for name, site in trace.nodes.items():
                if site["type"] == "sample":
                    self._check_site(name, site)
        self._check_sites_match(model_trace, guide_trace)
        latent = tuple(name for name, _ in latent_sites(guide_trace))
        roles = SiteRoles(
            latent=latent,
            guide_only=tuple(name for name, _ in guide_only_sites(guide_trace)),
            model_only=tuple(
                name for name, site in model_trace.nodes.items() if site["type"] == "sample" and name not in latent
            ),
        )
        return self._analyse(model_trace, guide_trace, roles)

    def _analyse(self, model_trace: Trace, guide_trace: Trace, roles: SiteRoles) -> Any:
        """
        Everything about a model/guide pair that depends only on its structure; computed
        once per :func:`trace_structure_key` and passed to :meth:`_particle_loss`. Raise
        here for structural errors.

        :param ~pyro.poutine.Trace model_trace: the model trace (subsample sites pruned).
        :param ~pyro.poutine.Trace guide_trace: the guide trace (subsample sites pruned).
        :param SiteRoles roles: the roles of the sample sites.
        """
        return roles

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> tuple[Trace, Trace, Any]:
        try:
            # Concrete samples keep their exact logarithm (log_space_sites scores them there).
            guide_trace = poutine.trace(ConcreteLogValueMessenger()(guide), graph_type="flat").get_trace(
                *args, **kwargs
            )
            replayed = poutine.replay(record_model_infer(model), trace=guide_trace)
            model_trace = poutine.trace(replayed, graph_type="flat").get_trace(*args, **kwargs)
        except ZeroDivisionError as error:
            # Pyro's subsampled plate divides by the batch size.
            raise ValueError(
                f"{self.loss_name} expected a non-empty batch but tracing the model and guide divided by zero "
                f"({error}), as a plate with an empty subsample does; pass at least one data point"
            ) from error
        return model_trace, guide_trace, self._structure(model_trace, guide_trace)

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
                fix = "sample it in the guide (or observe it in the model)"
                if name in split_sites(model_trace, [name]):
                    fix = (
                        f"it is the latent half of a site sampled with obs_mask=: sample {name!r} in the guide, "
                        "under poutine.mask(mask=~obs_mask)"
                    )
                raise ValueError(
                    f"{self.loss_name} expected every latent site of the model in the guide but model site {name!r} "
                    f"is not sampled by the guide; {fix}"
                )
        for name, site in list(guide_latent.items()) + guide_only_sites(guide_trace):
            if not site["is_observed"] and not site["fn"].has_rsample:
                raise ValueError(
                    f"{self.loss_name} expected reparameterised guide sites but site {name!r} has "
                    f"{type(site['fn']).__name__}, {_reparameterisation_fix(site['fn'])}"
                )

    def _particle_loss(
        self, model_trace: Trace, guide_trace: Trace, structure: Any
    ) -> tuple[torch.Tensor, Callable[[], Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """
        Loss and terms of one traced particle (or of all, when vectorized).

        :param structure: the traces' structure, as :meth:`_analyse` returned it.
        :returns: ``(loss, terms, site_log_probs)``: the loss summed over the particles in
            the trace; a callable returning each term (a tensor) summed over those particles,
            called without gradients only when :attr:`terms` is read, so it must close over
            detached tensors that nothing updates in place (no parameters); and every site's
            log density tensor, used only to name the culprit when the loss is not finite.
        """
        raise NotImplementedError

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """
        :returns: a differentiable estimate of the loss, averaged over particles. Not
            checked for finiteness (that would synchronise with the device; see :meth:`loss`).
        :rtype: torch.Tensor
        """
        loss = None
        pending, site_log_probs = [], []
        for model_trace, guide_trace, structure in self._get_traces(model, guide, args, kwargs):
            particle_loss, particle_terms, particle_log_probs = self._particle_loss(model_trace, guide_trace, structure)
            loss = particle_loss if loss is None else loss + particle_loss
            pending.append(particle_terms)
            site_log_probs.append(particle_log_probs)
        if self.num_particles != 1:
            loss = loss / self.num_particles
        self._terms, self._pending_terms, self._pending_like = None, pending, loss
        self._site_log_probs = site_log_probs
        return loss

    def _check_finite(self, loss: float) -> float:
        if not math.isfinite(loss):
            self._raise_non_finite(loss)
        return loss

    def _raise_non_finite(self, loss: float) -> None:
        bad_terms = [n for n, v in self.terms.items() if not math.isfinite(v)]
        bad_sites = []
        for site_log_probs in self._site_log_probs:
            for name, log_prob in site_log_probs.items():
                if name not in bad_sites and not torch.isfinite(log_prob.detach()).all():
                    bad_sites.append(name)
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
        :raises NonFiniteLossError: where it is not finite.
        """
        with torch.no_grad():
            return self._check_finite(self.differentiable_loss(model, guide, *args, **kwargs).item())

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """
        Computes the loss and backpropagates it into the parameters.

        :returns: an estimate of the loss.
        :rtype: float
        :raises NonFiniteLossError: where it is not finite (after the backward pass).
        """
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        # The step's one host sync, after the backward pass has been queued.
        return self._check_finite(loss.item())


def log_space_sites(guide_site: dict, model_site: dict) -> tuple[dict, dict]:
    r"""
    The guide and model sites of a latent variable as the objectives score them: where both
    give it a Concrete, copies of the sites with the ExpConcrete distributions
    (:func:`~pyro_hfvae.distributions.util.log_space_concrete`) and the sample's logarithm
    (:func:`~pyro_hfvae.distributions.util.concrete_log_value`: exact where
    :class:`~pyro_hfvae.poutine.ConcreteLogValueMessenger` drew it) as the value; else
    the sites themselves.

    The change of variables :math:`y = \log x` multiplies prior and posterior densities by the
    same Jacobian, so the ELBO and every term of the decomposition are unchanged; but in log
    space a confident posterior's sample is scored where it lies, whereas on the simplex its
    underflowed components must be clamped (a KL of 75 nats read as -2 in float32).

    :param dict guide_site: the guide trace's site.
    :param dict model_site: the model trace's site of the same name.
    :returns: ``(guide_site, model_site)``.
    :rtype: tuple
    """
    guide_fn, model_fn = guide_site["fn"], model_site["fn"]
    if not (isinstance(_unwrap(guide_fn, independent=True), RelaxedOneHotCategorical)
            and isinstance(_unwrap(model_fn, independent=True), RelaxedOneHotCategorical)):
        return guide_site, model_site
    log_value = concrete_log_value(soft_value(guide_site["value"]))
    return (dict(guide_site, fn=log_space_concrete(guide_fn), value=log_value),
            dict(model_site, fn=log_space_concrete(model_fn), value=log_value))


def check_concrete_scoring(value: str) -> str:
    """``value`` if it names a way to score Concrete sites (``"relaxed"`` or ``"argmax"``), else a ValueError."""
    if value not in CONCRETE_SCORINGS:
        raise ValueError(f"expected concrete_scoring in {CONCRETE_SCORINGS} but got {value!r}")
    return value


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
