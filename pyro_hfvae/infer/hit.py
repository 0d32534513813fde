# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Per-site rate weights: the hierarchical information trading (HIT) objective.
"""

import logging
import math
from collections.abc import Mapping
from typing import Any, Callable

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine import Trace
from torch.distributions import Distribution, RelaxedOneHotCategorical
from torch.distributions.kl import kl_divergence

from pyro_hfvae.distributions.util import concrete_log_prob, soft_value
from pyro_hfvae.infer.groups import GROUP_SEPARATOR, site_group
from pyro_hfvae.infer.plate_layout import PlateLayout, latent_sites
from pyro_hfvae.infer.terms_elbo import TermsELBO

logger = logging.getLogger(__name__)

__all__ = [
    "HITLoss",
]


def _log_prob(fn: Distribution, value: torch.Tensor, args: tuple = (), kwargs: dict | None = None) -> torch.Tensor:
    # Concrete densities underflow at low temperature: score them in log space (equal where finite).
    if isinstance(fn, RelaxedOneHotCategorical):
        return concrete_log_prob(fn, soft_value(value))
    return fn.log_prob(value, *args, **(kwargs or {}))


def _kl_key(fn: Distribution) -> tuple:
    """What decides whether torch has a KL: the type chain and reinterpreted dims."""
    key = (type(fn), getattr(fn, "reinterpreted_batch_ndims", None))
    base = getattr(fn, "base_dist", None)
    return key if base is None else key + _kl_key(base)


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
    group of one are an error, as are negative or non-finite weights.

    **Terms.** After each evaluation :attr:`terms` holds ``distortion`` (minus the log
    likelihood of the sites not in the guide, normally the observed ones), ``rate/<site>``
    for every latent site, ``rate`` (their sum), ``elbo`` (``-distortion - rate``) and
    ``beta/<site>`` (the weight used). Sites inside the data plate count in nats per data
    point (averaged over the batch; masked-out data points count as 0); sites outside it
    (global latents, global observations) count in nats in total. Terms are unscaled: the
    loss applies the Pyro scales. For a subsampled data plate with only local sites,
    ``loss == N * (distortion + sum_l beta_l * rate_l)`` on average over particles.

    :param betas: mapping name -> weight, an object with a ``betas()`` method returning
        one, or a callable returning one; ``None`` weights every site by ``default_beta``.
    :param float default_beta: weight of latent sites that ``betas`` does not name.
    :param bool analytic_kl: use torch's registered KL divergence where there is one.
    :param int dataset_size: ``N`` where the data plate does not carry it (e.g.
        ``pyro.plate("data", B)``): data-plate sites are then scaled by ``N/B``, as a
        subsampled plate would scale them. Must agree with a subsampled plate.
    :param str data_plate: the data plate's name, where the guide has several plates.
    :param int num_particles: number of particles.
    :param int max_plate_nesting: bound on nested plates.
    :param bool vectorize_particles: evaluate particles in one vectorized pass.
    :param bool strict_enumeration_warning: passed to :class:`~pyro.infer.ELBO`.
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
        dataset_size: int | None = None,
        data_plate: str | None = None,
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
        if not (
            betas is None or isinstance(betas, Mapping) or callable(getattr(betas, "betas", None)) or callable(betas)
        ):
            raise TypeError(
                "HITLoss expected betas to be a mapping site -> weight, an object with a betas() "
                f"method or a callable returning a mapping, but got {type(betas).__name__}; e.g. "
                "pass {'z1': 1.0, 'z2': 4.0}"
            )
        if dataset_size is not None and (not isinstance(dataset_size, int) or dataset_size < 1):
            raise ValueError(f"HITLoss expected dataset_size to be a positive int but got {dataset_size!r}")
        #: The weights as given: a mapping, a ``betas()`` provider or a callable.
        self.betas = betas
        self.default_beta = self._check_beta("default_beta", default_beta)
        self.analytic_kl = bool(analytic_kl)
        self.dataset_size = dataset_size
        self.data_plate = data_plate
        self._betas_now: dict[str, float] = {}
        # Pairs of distribution types for which torch has no KL divergence (tried once each).
        self._no_kl: set[tuple] = set()

    @staticmethod
    def _check_beta(name: str, value: Any) -> float:
        try:
            beta = float(value)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"HITLoss expected the weight of {name!r} to be a number but got {value!r}") from None
        if not math.isfinite(beta) or beta < 0:
            raise ValueError(
                f"HITLoss expected the weight of {name!r} to be finite and >= 0 but got {beta}; "
                "rates are penalised, not rewarded"
            )
        return beta

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
        return {str(name): self._check_beta(name, value) for name, value in mapping.items()}

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """
        :returns: a differentiable estimate of the loss, averaged over particles.
        :rtype: torch.Tensor
        """
        # Read once per evaluation, so that a schedule is consistent across the particles.
        self._betas_now = self.read_betas()
        return super().differentiable_loss(model, guide, *args, **kwargs)

    def _site_betas(self, guide_trace: Trace, model_trace: Trace) -> dict[str, float]:
        betas = self._betas_now
        site_betas, known_groups = {}, set()
        for name, guide_site in latent_sites(guide_trace):
            path = site_group(guide_site) or site_group(model_trace.nodes.get(name, {}))
            parts = path.split(GROUP_SEPARATOR) if path else []
            prefixes = [GROUP_SEPARATOR.join(parts[:i]) for i in range(len(parts), 0, -1)]
            known_groups.update(prefixes)
            key = next((k for k in [name] + prefixes if k in betas), None)
            site_betas[name] = self.default_beta if key is None else betas[key]
        unknown = sorted(set(betas) - set(site_betas) - known_groups)
        if unknown:
            groups = f" and groups {sorted(known_groups)}" if known_groups else ""
            raise ValueError(
                f"HITLoss got weights for {unknown}, which are not latent sites of the guide; "
                f"its latent sites are {list(site_betas)}{groups}. Fix the names in betas"
            )
        return site_betas

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

    def _data_scale(self, guide_trace: Trace, layout: PlateLayout) -> float:
        """Extra scale ``N/B`` of data-plate sites where ``dataset_size`` gives the plate's N."""
        if self.dataset_size is None:
            return 1.0
        for _, site in latent_sites(guide_trace):
            for frame in site["cond_indep_stack"]:
                if frame.name == layout.data_plate and frame.full_size is not None and frame.full_size > frame.size:
                    return 1.0
        return self.dataset_size / layout.batch_size

    def _particle_loss(self, model_trace: Trace, guide_trace: Trace):
        layout = PlateLayout.from_trace(
            guide_trace,
            data_plate=self.data_plate,
            dataset_size=self.dataset_size,
            loss_name=self.loss_name,
        )
        data_scale = self._data_scale(guide_trace, layout)
        site_betas = self._site_betas(guide_trace, model_trace)

        def unscaled_term(tensor: torch.Tensor, in_data_plate: bool) -> torch.Tensor:
            # Per data point (averaged over the batch, summed over particles), or the total.
            return layout.per_datum(tensor).mean(-1).sum(0) if in_data_plate else tensor.sum()

        site_log_probs = {}
        loss = 0.0
        distortion = torch.zeros(())
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or name in site_betas:
                continue
            log_prob = _log_prob(site["fn"], site["value"], site["args"], site["kwargs"])
            site_log_probs[name] = log_prob
            local = layout.in_data_plate(site)
            weight = data_scale if local else 1.0
            loss = loss - weight * scale_and_mask(log_prob, site["scale"], site["mask"]).sum()
            distortion = distortion - unscaled_term(scale_and_mask(log_prob, 1.0, site["mask"]), local)

        terms = {"distortion": distortion}
        rate = 0.0
        for name, guide_site in latent_sites(guide_trace):
            model_site = model_trace.nodes.get(name)
            if model_site is None:
                raise ValueError(
                    "HITLoss expected every latent site of the guide in the model but guide site "
                    f"{name!r} is not in the model; the rate of a site needs its prior "
                    "p(site | parents)"
                )
            value = guide_site["value"]
            local = layout.in_data_plate(guide_site)
            kl = self._analytic_kl(guide_site["fn"], model_site["fn"]) if self.analytic_kl else None
            if kl is not None:
                batch_shape = value.shape[: value.dim() - guide_site["fn"].event_dim]
                kl = torch.as_tensor(kl, dtype=value.dtype, device=value.device)
                kl = kl.expand(torch.broadcast_shapes(kl.shape, batch_shape))
                site_log_probs[name + " (KL)"] = kl
                scaled = scale_and_mask(kl, guide_site["scale"], guide_site["mask"]).sum()
                site_rate = unscaled_term(scale_and_mask(kl, 1.0, guide_site["mask"]), local)
            else:
                log_q = _log_prob(guide_site["fn"], value)
                log_p = _log_prob(model_site["fn"], value)
                site_log_probs[name] = log_q
                site_log_probs[name + " (prior)"] = log_p
                scaled = (
                    scale_and_mask(log_q, guide_site["scale"], guide_site["mask"]).sum()
                    - scale_and_mask(log_p, model_site["scale"], model_site["mask"]).sum()
                )
                site_rate = unscaled_term(scale_and_mask(log_q, 1.0, guide_site["mask"]), local) - unscaled_term(
                    scale_and_mask(log_p, 1.0, model_site["mask"]), local
                )
            weight = data_scale if local else 1.0
            loss = loss + site_betas[name] * weight * scaled
            terms[f"rate/{name}"] = site_rate
            terms[f"beta/{name}"] = torch.tensor(site_betas[name] * layout.num_particles)
            rate = rate + site_rate
        terms["rate"] = rate if isinstance(rate, torch.Tensor) else torch.zeros(())
        terms["elbo"] = -(terms["distortion"] + terms["rate"])
        if not isinstance(loss, torch.Tensor):
            loss = torch.zeros(())
        return loss, terms, site_log_probs
