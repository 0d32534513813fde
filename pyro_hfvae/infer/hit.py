# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Per-site rate weights: the hierarchical information trading (HIT) objective.
"""

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine import Trace
from torch.distributions import Distribution
from torch.distributions.kl import kl_divergence

from pyro_hfvae.distributions.util import variable_log_prob
from pyro_hfvae.infer.terms_elbo import (
    TermsELBO,
    check_concrete_scoring,
    check_dataset_size,
    check_weight,
    log_space_sites,
)
from pyro_hfvae.poutine.groups import GROUP_SEPARATOR, site_groups
from pyro_hfvae.poutine.plate_layout import PlateLayout
from pyro_hfvae.poutine.trace_structure import SiteRoles

logger = logging.getLogger(__name__)

__all__ = [
    "HITLoss",
]


def _kl_key(fn: Distribution) -> tuple:
    """What decides whether torch has a KL: the type chain and reinterpreted dims."""
    key = (type(fn), getattr(fn, "reinterpreted_batch_ndims", None))
    base = getattr(fn, "base_dist", None)
    return key if base is None else key + _kl_key(base)


@dataclass(frozen=True)
class _Structure:
    """What :class:`HITLoss` reads from the structure of a model/guide pair (see :meth:`TermsELBO._analyse`)."""

    layout: PlateLayout | None
    # (name, in the data plate) of the model-only and guide-only sites
    model_only: tuple[tuple[str, bool], ...]
    guide_only: tuple[tuple[str, bool], ...]
    latent: tuple[tuple[str, bool, bool], ...]  # (name, guide site in the data plate, model site in it)
    beta_keys: dict  # latent site -> the name in betas that gives its weight (None: default_beta)
    data_scale: float  # extra scale N/B of data-plate sites where dataset_size gives N
    num_particles: int


class HITLoss(TermsELBO):
    r"""
    The hierarchical information trading objective of Xiao and Bamler (2023): an ELBO
    whose rate is split into one rate per latent sample site, each with its own weight.

    For a hierarchical model :math:`p(z_L)\, p(z_{L-1} \mid z_L) \cdots p(x \mid z_1)` with
    a guide in the same order, :math:`q(z_L \mid x)\, q(z_{L-1} \mid z_L, x) \cdots`, the
    rate of site :math:`z_l` is

    .. math::

        R_l = \mathbb{E}_q\big[\log q(z_l \mid z_{l+1}, x) - \log p(z_l \mid z_{l+1})\big]
            = \mathbb{E}_q\big[\mathrm{KL}\big(q(z_l \mid z_{l+1}, x)
              \,\|\,p(z_l \mid z_{l+1})\big)\big]

    and the loss is, per data point :math:`b` and one sample :math:`z_b \sim q`,

    .. math::

        \mathrm{loss} = -\frac{N}{B} \sum_b \Big[\log p(x_b \mid z_b)
                        - \sum_l \beta_l\, r_{l,b}\Big],

    where :math:`r_{l,b}` is the sampled rate :math:`\log q - \log p` of site ``l`` at data
    point ``b`` or, with ``analytic_kl=True`` and where torch registers a KL divergence for
    the pair of site distributions (given the sampled parents), that KL. Sites without a
    registered KL fall back to the sampled rate. ``N/B`` stands for the sites' own Pyro
    scale (a subsampled data plate, times any ``poutine.scale``), as in
    :class:`~pyro.infer.Trace_ELBO`. With every :math:`\beta_l = 1` the loss equals
    :class:`~pyro.infer.Trace_ELBO` (sampled rates) or :class:`~pyro.infer.TraceMeanField_ELBO`
    (analytic rates) on the same samples; all :math:`\beta_l = \beta` is the beta-VAE.
    The guide need not be hierarchical: in a flat model every site (or group) simply has
    its own weight.

    **Weights.** ``betas`` maps names to weights. A latent site takes the weight of its own
    name; else that of its group (``infer={"group": ...}`` or :class:`~pyro_hfvae.group`,
    on the guide or the model site; for a nested group ``"a/b"`` the key ``"a/b"`` before
    ``"a"``); else ``default_beta``. ``betas`` may also be an object with a ``betas()``
    method or a callable returning such a mapping: it is read once at every evaluation, so
    schedules and annealing plug in directly. Names that are neither a latent site nor a
    group of one are an error. Weights are finite numbers ``>= 0`` (Python or NumPy
    numbers, or 0-d tensors; not bools). :meth:`site_betas` gives the weight of every site.
    Models with only global latents work as well: every site's weight still applies.

    **Terms.** After each evaluation :attr:`terms` holds ``distortion`` (minus the log
    likelihood of the sites not in the guide, normally the observed ones), ``rate/<site>``
    for every latent site, ``rate`` (their sum), ``elbo`` (``-distortion - rate``) and
    ``beta/<site>`` (the weight used). Sites inside the data plate count in nats per data
    point (averaged over the batch; masked-out data points count as 0); sites outside it
    (global latents, global observations) count in nats in total. Where the guide has
    auxiliary or observed sites, ``auxiliary`` is minus their guide log density (weight 1,
    part of ``elbo``), as in :class:`~pyro.infer.Trace_ELBO`. Terms are unscaled: the
    loss applies the Pyro scales. For a subsampled data plate with only local sites,
    ``loss == N * (distortion + sum_l beta_l * rate_l)`` on average over particles.

    :param betas: mapping name -> weight, an object with a ``betas()`` method returning
        one, or a callable returning one; ``None`` weights every site by ``default_beta``.
    :param float default_beta: weight of latent sites that ``betas`` does not name.
    :param bool analytic_kl: use torch's registered KL divergence where there is one.
    :param str concrete_scoring: ``"relaxed"`` (default) scores a Concrete site's sampled rate
        with the relaxed densities (at the sample's logarithm, so a confident posterior is
        scored exactly); ``"argmax"`` with the categorical probabilities of the sample's
        argmax, as :class:`~pyro_hfvae.HFVAELoss` can (the reference's scoring: biased, but
        it does not charge a confident class the relaxed density's tens of nats).
    :param int dataset_size: ``N`` (a positive int) where the data plate does not carry it
        (e.g. ``pyro.plate("data", B)``): data-plate sites are then scaled by ``N/B``, as a
        subsampled plate would scale them. Must agree with a subsampled plate.
    :param str data_plate: the data plate's name. It decides which terms count per data
        point and which plate ``dataset_size`` scales; by default it is the subsampled plate
        or, where no plate or several are subsampled, the outermost plate around the first
        latent site in a plate.
    :param int num_particles: number of particles.
    :param int max_plate_nesting: bound on nested plates.
    :param bool vectorize_particles: evaluate particles in one vectorized pass.
    :param bool retain_graph: passed to ``backward``.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro_hfvae.infer.hit import HITLoss
        >>> x = torch.randn(4, 2)
        >>> def model(x):
        ...     with pyro.plate("data", size=100, subsample=torch.arange(4)):
        ...         z2 = pyro.sample("z2", dist.Normal(0., 1.).expand([2]).to_event(1))
        ...         z1 = pyro.sample("z1", dist.Normal(z2, 1.).to_event(1))
        ...         pyro.sample("x", dist.Normal(z1, 1.).to_event(1), obs=x)
        >>> def guide(x):
        ...     with pyro.plate("data", size=100, subsample=torch.arange(4)):
        ...         z2 = pyro.sample("z2", dist.Normal(x / 2, 1.).to_event(1))
        ...         pyro.sample("z1", dist.Normal((x + z2) / 2, 1.).to_event(1))
        >>> loss = HITLoss({"z1": 0.5, "z2": 4.0})
        >>> value = loss.loss(model, guide, x)
        >>> sorted(loss.terms)
        ['beta/z1', 'beta/z2', 'distortion', 'elbo', 'rate', 'rate/z1', 'rate/z2']
        >>> loss.terms["beta/z2"]
        4.0

    References

    [1] Trading Information between Latents in Hierarchical Variational Autoencoders,
        Tim Z. Xiao, Robert Bamler (ICLR 2023)
    [2] Fixing a Broken ELBO,
        Alexander A. Alemi, Ben Poole, Ian Fischer, Joshua V. Dillon, Rif A. Saurous,
        Kevin Murphy (ICML 2018)
    """

    loss_name = "HITLoss"

    def __init__(
        self,
        betas: Mapping[str, float] | Callable[[], Mapping[str, float]] | Any | None = None,
        *,
        default_beta: float = 1.0,
        analytic_kl: bool = True,
        concrete_scoring: str = "relaxed",
        dataset_size: int | None = None,
        data_plate: str | None = None,
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
        if not (
            betas is None or isinstance(betas, Mapping) or callable(getattr(betas, "betas", None)) or callable(betas)
        ):
            raise TypeError(
                "HITLoss expected betas to be a mapping site -> weight, an object with a betas() "
                f"method or a callable returning a mapping, but got {type(betas).__name__}; e.g. "
                "pass {'z1': 1.0, 'z2': 4.0}"
            )
        #: The weights as given: a mapping, a ``betas()`` provider or a callable.
        self.betas = betas
        self.default_beta = check_weight(self.loss_name, "default_beta", default_beta)
        self.analytic_kl = bool(analytic_kl)
        self.concrete_scoring = check_concrete_scoring(concrete_scoring)
        self.dataset_size = check_dataset_size(self.loss_name, dataset_size)
        if isinstance(betas, Mapping):
            self.read_betas()  # check the weights now
        self.data_plate = data_plate
        self._betas_now: dict[str, float] = {}
        # Pairs of distribution types for which torch has no KL divergence (tried once each).
        self._no_kl: set[tuple] = set()

    def read_betas(self) -> dict[str, float]:
        """
        Reads the current weights from ``betas`` (calling it or its ``betas()`` method).

        :returns: a dict name -> weight, checked to be finite and non-negative.
        :rtype: dict
        """
        source = self.betas
        if source is None:
            mapping = {}
        elif callable(getattr(source, "betas", None)):
            mapping = source.betas()
        elif isinstance(source, Mapping):
            mapping = source
        else:
            mapping = source()
        if not isinstance(mapping, Mapping):
            raise TypeError(
                f"HITLoss expected betas to provide a mapping name -> weight but got {type(mapping).__name__}"
            )
        return {str(name): check_weight(self.loss_name, repr(name), value) for name, value in mapping.items()}

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """
        :returns: a differentiable estimate of the loss, averaged over particles.
        :rtype: torch.Tensor
        """
        # Read once per evaluation, so that a schedule is consistent across the particles.
        self._betas_now = self.read_betas()
        return super().differentiable_loss(model, guide, *args, **kwargs)

    def site_betas(
        self, guide_trace: Trace, model_trace: Trace | None = None, betas: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """
        The weight of every latent site of a guide trace: that of its name in ``betas``, else
        that of its group (the deepest named level first; groups as
        :func:`~pyro_hfvae.poutine.groups.site_groups` reads them), else :attr:`default_beta`.

        :param ~pyro.poutine.Trace guide_trace: a guide trace.
        :param ~pyro.poutine.Trace model_trace: the model replayed on it (for groups named on
            the model side), or ``None``.
        :param dict betas: the weights (default: :meth:`read_betas`).
        :returns: site name -> weight.
        :rtype: dict
        :raises ValueError: where ``betas`` names neither a latent site nor a group.

        Example::

            >>> import pyro, pyro.distributions as dist
            >>> from pyro_hfvae import group
            >>> def guide():
            ...     with group("top"):
            ...         pyro.sample("a", dist.Normal(0., 1.))
            ...     pyro.sample("b", dist.Normal(0., 1.))
            >>> HITLoss({"top": 2.0}, default_beta=0.5).site_betas(pyro.poutine.trace(guide).get_trace())
            {'a': 2.0, 'b': 0.5}
        """
        betas = self.read_betas() if betas is None else betas
        keys = self._beta_keys(site_groups(guide_trace, model_trace), betas)
        return {name: self.default_beta if key is None else betas[key] for name, key in keys.items()}

    @staticmethod
    def _beta_keys(groups: Mapping[str, str], betas: Mapping[str, float]) -> dict[str, str | None]:
        """Site -> the name in ``betas`` that gives its weight (``None``: :attr:`default_beta`)."""
        out, known_groups = {}, set()
        for name, path in groups.items():
            parts = path.split(GROUP_SEPARATOR)
            prefixes = [GROUP_SEPARATOR.join(parts[:i]) for i in range(len(parts), 0, -1)]
            known_groups.update(prefixes)
            out[name] = next((k for k in [name] + prefixes if k in betas), None)
        unknown = sorted(set(betas) - set(out) - known_groups)
        if unknown:
            groups_text = f" and groups {sorted(known_groups - set(out))}" if known_groups - set(out) else ""
            raise ValueError(
                f"HITLoss got weights for {unknown}, which are not latent sites of the guide; "
                f"its latent sites are {list(out)}{groups_text}. Fix the names in betas"
            )
        return out

    def _analytic_kl(self, guide_fn: Distribution, model_fn: Distribution) -> torch.Tensor | None:
        key = (_kl_key(guide_fn), _kl_key(model_fn))
        if key in self._no_kl:
            return None
        try:
            return kl_divergence(guide_fn, model_fn)
        except NotImplementedError:
            logger.debug(
                "HITLoss: no KL(%s || %s) registered; using sampled rates",
                type(guide_fn).__name__,
                type(model_fn).__name__,
            )
            self._no_kl.add(key)
            return None

    def _config_key(self) -> tuple:
        # The weights' values change with schedules; which names they have decides the lookup.
        return (tuple(sorted(self._betas_now)), self.dataset_size, self.data_plate, self.vectorize_particles)

    def _analyse(self, model_trace: Trace, guide_trace: Trace, roles: SiteRoles) -> _Structure:
        layout = PlateLayout.from_trace(
            guide_trace,
            model_trace=model_trace,
            data_plate=self.data_plate,
            dataset_size=self.dataset_size,
            outermost=True,
            loss_name=self.loss_name,
        )

        def local(site: dict) -> bool:
            return layout is not None and layout.in_data_plate(site)

        if layout is not None:
            num_particles = layout.num_particles
        else:
            num_particles = self.num_particles if self.vectorize_particles else 1
        # Where dataset_size gives the plate's N, data-plate sites are scaled by N/B (a subsampled
        # plate carries its own scale: from_trace checked that it agrees).
        data_scale = 1.0
        if self.dataset_size is not None and layout is not None and not layout.subsampled:
            data_scale = self.dataset_size / layout.batch_size
        return _Structure(
            layout=layout,
            model_only=tuple((n, local(model_trace.nodes[n])) for n in roles.model_only),
            guide_only=tuple((n, local(guide_trace.nodes[n])) for n in roles.guide_only),
            latent=tuple((n, local(guide_trace.nodes[n]), local(model_trace.nodes[n])) for n in roles.latent),
            beta_keys=self._beta_keys(site_groups(guide_trace, model_trace), self._betas_now),
            data_scale=data_scale,
            num_particles=num_particles,
        )

    def _particle_loss(self, model_trace: Trace, guide_trace: Trace, structure: _Structure):
        betas = self._betas_now
        data_scale = structure.data_scale

        def weighted(log_prob: torch.Tensor, site: dict, local: bool) -> torch.Tensor:
            # As Pyro scales it, times N/B where dataset_size gives N.
            total = scale_and_mask(log_prob, site["scale"], site["mask"]).sum()
            return data_scale * total if local and data_scale != 1.0 else total

        site_log_probs = {}
        loss = None
        distortion, auxiliary, rates, site_betas = [], [], [], {}
        for name, local in structure.model_only:
            site = model_trace.nodes[name]
            log_prob = variable_log_prob(site["fn"], site["value"], 0)
            site_log_probs[name] = log_prob
            part = weighted(log_prob, site, local)
            loss = -part if loss is None else loss - part
            distortion.append((log_prob, site["mask"], local))
        for name, local in structure.guide_only:
            site = guide_trace.nodes[name]
            log_prob = variable_log_prob(site["fn"], site["value"], 0)
            site_log_probs[name + " (guide)"] = log_prob
            part = weighted(log_prob, site, local)
            loss = part if loss is None else loss + part
            auxiliary.append((log_prob, site["mask"], local))
        for name, local, model_local in structure.latent:
            key = structure.beta_keys[name]
            beta = self.default_beta if key is None else betas[key]
            site_betas[name] = beta
            guide_site, model_site = guide_trace.nodes[name], model_trace.nodes[name]
            rate, scaled = self._site_rate(name, guide_site, model_site, (local, model_local), site_log_probs, weighted)
            part = beta * scaled
            loss = part if loss is None else loss + part
            rates.append((name, rate))
        if loss is None:
            loss = torch.zeros(())
        terms = functools.partial(
            self._particle_terms,
            structure,
            [(lp.detach(), mask, local) for lp, mask, local in distortion],
            [(lp.detach(), mask, local) for lp, mask, local in auxiliary],
            [(name, [(t.detach(), mask, local) for t, mask, local in rate]) for name, rate in rates],
            site_betas,
        )
        return loss, terms, site_log_probs

    def _particle_terms(
        self, structure: _Structure, distortion: list, auxiliary: list, rates: list, site_betas: dict
    ) -> dict[str, torch.Tensor]:
        """The terms of one particle, from its detached tensors (see :attr:`terms`)."""
        layout = structure.layout

        def unscaled_term(tensor: torch.Tensor, site_mask: Any, local: bool) -> torch.Tensor:
            # Unscaled, masked; per data point (averaged over the batch, summed over particles), or the total.
            tensor = scale_and_mask(tensor, 1.0, site_mask)
            return layout.per_datum(tensor).mean(-1).sum(0) if local else tensor.sum()

        terms = {"distortion": torch.zeros(())}
        for parts in distortion:
            terms["distortion"] = terms["distortion"] - unscaled_term(*parts)
        for parts in auxiliary:
            terms["auxiliary"] = terms.get("auxiliary", 0.0) - unscaled_term(*parts)
        rate = torch.zeros(())
        for name, parts in rates:
            # log q - log p (each with its own mask), or the analytic KL
            site_rate = unscaled_term(*parts[0])
            if len(parts) == 2:
                site_rate = site_rate - unscaled_term(*parts[1])
            terms[f"rate/{name}"] = site_rate
            terms[f"beta/{name}"] = torch.tensor(site_betas[name] * structure.num_particles)
            rate = rate + site_rate
        terms["rate"] = rate
        terms["elbo"] = terms.get("auxiliary", 0.0) - (terms["distortion"] + terms["rate"])
        return terms

    def _site_rate(
        self, name: str, guide_site: dict, model_site: dict, local: tuple, site_log_probs: dict, weighted
    ) -> tuple[list, torch.Tensor]:
        """
        The rate of one site: the ``(tensor, mask, local)`` parts of its unscaled rate (the
        KL, or ``log q`` then ``log p``; per data point where the guide site is in the data
        plate), and the rate as the loss weighs it. ``local`` says whether the guide and the
        model site are in the data plate.
        """
        local, model_local = local
        value = guide_site["value"]
        kl = self._analytic_kl(guide_site["fn"], model_site["fn"]) if self.analytic_kl else None
        if kl is not None:
            batch_shape = value.shape[: value.dim() - guide_site["fn"].event_dim]
            kl = torch.as_tensor(kl, dtype=value.dtype, device=value.device)
            kl = kl.expand(torch.broadcast_shapes(kl.shape, batch_shape))
            site_log_probs[name + " (KL)"] = kl
            return [(kl, guide_site["mask"], local)], weighted(kl, guide_site, local)
        guide_site, model_site = log_space_sites(guide_site, model_site)
        concrete = self.concrete_scoring
        log_q = variable_log_prob(guide_site["fn"], guide_site["value"], 0, concrete=concrete)
        log_p = variable_log_prob(model_site["fn"], guide_site["value"], 0, concrete=concrete)
        site_log_probs[name] = log_q
        site_log_probs[name + " (prior)"] = log_p
        parts = [(log_q, guide_site["mask"], local), (log_p, model_site["mask"], local)]
        return parts, weighted(log_q, guide_site, local) - weighted(log_p, model_site, model_local)
