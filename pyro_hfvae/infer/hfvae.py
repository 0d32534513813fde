# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import logging
import math
import warnings
from typing import Sequence

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine import Trace
from torch.distributions import Categorical, Distribution, RelaxedOneHotCategorical

from pyro_hfvae.distributions.util import _unwrap, soft_value, variable_log_prob, variable_ndim
from pyro_hfvae.infer.groups import GroupNode, build_group_tree, site_group
from pyro_hfvae.infer.plate_layout import PlateLayout, latent_sites
from pyro_hfvae.infer.terms_elbo import TermsELBO, model_infer
from pyro_hfvae.infer.weight_bound import tc_weight_bound
from pyro_hfvae.ops.aggregate_posterior import tree_marginals

logger = logging.getLogger(__name__)

__all__ = [
    "HFVAELoss",
]

_CONCRETE_SCORING = ("relaxed", "argmax")


def _is_batch_invariant(fn: Distribution, data_dim: int) -> bool:
    """Whether ``fn``'s parameters provably do not vary along the data axis (size 1 or stride 0)."""
    fn = _unwrap(fn)
    batch_ndim = len(fn.batch_shape)
    if batch_ndim < -data_dim or fn.batch_shape[data_dim] == 1:
        return True
    base = getattr(fn, "base_dist", None)
    if base is not None:  # Independent, TransformedDistribution: the base holds the parameters.
        return _is_batch_invariant(base, data_dim - getattr(fn, "reinterpreted_batch_ndims", 0))
    params = [fn.__dict__[name] for name in fn.arg_constraints if isinstance(fn.__dict__.get(name), torch.Tensor)]
    # Some distributions keep their parameters in an inner one (ExpRelaxedCategorical._categorical).
    inner = [v for v in fn.__dict__.values() if isinstance(v, Distribution)]
    if not params and not inner:
        return False
    axis = batch_ndim + data_dim  # parameters are batch_shape + parameter-event shape
    for param in params:
        if param.dim() > axis and param.size(axis) > 1 and param.stride(axis) != 0:
            return False
    return all(_is_batch_invariant(d, data_dim) for d in inner)


class HFVAELoss(TermsELBO):
    r"""
    The hierarchically factorised VAE objective of Esmaeili et al. (2019) as a Pyro ELBO.

    For data point ``b`` with one sample :math:`z_b \sim q(z \mid x_b)`, groups ``g``
    and variables ``e`` within groups, the objective is

    .. math::

        \mathcal{L}_b = \log p(x_b \mid z_b)
          - \alpha \big[\log q(z_b \mid x_b) - \log \hat q(z_b)\big]
          - \beta \Big[\big(\log \hat q(z_b) - \textstyle\sum_g \log \hat q(z_{bg})\big)
                       - \big(\log p(z_b) - \sum_g \log p(z_{bg})\big)\Big] \\
          - \gamma \sum_g \Big[\big(\log \hat q(z_{bg}) - \textstyle\sum_e \log \hat q(z_{bge})\big)
                       - \big(\log p(z_{bg}) - \sum_e \log p(z_{bge})\big)\Big]
          - \sum_{g,e} \big[\log \hat q(z_{bge}) - \log p(z_{bge})\big]

    (mutual information, total correlation between groups, total correlation within
    groups, dimension-wise KL), with every aggregate-posterior marginal :math:`\hat q`
    estimated by minibatch-stratified sampling (:mod:`pyro_hfvae.ops.aggregate_posterior`).
    With :math:`\alpha = \beta = \gamma = 1` the terms telescope to
    :class:`~pyro.infer.Trace_ELBO`; :math:`\beta = \gamma` is the beta-TCVAE objective.
    The loss is :math:`-\sum_b s\, \mathcal{L}_b` averaged over particles, where ``s`` is
    the sites' Pyro scale (``N/B`` for a subsampled data plate, times any ``poutine.scale``).

    **Groups.** ``infer={"group": name}`` on a guide site, or a :class:`~pyro_hfvae.group`
    context, names its group; a site without one is its own group. Nested groups form a
    tree (root -> groups -> sub-groups -> variables); the total correlation at each
    internal node is taken between its children and weighted by depth: ``beta`` at the
    root, ``gamma`` one level down, then ``level_weights[0]``, ... . A site whose
    distribution is ``Independent`` over scalar events has one variable per element;
    a multivariate event (Concrete, Dirichlet, MultivariateNormal) is one variable.

    **Prior marginals.** :math:`\log p(z_{bg})` and :math:`\log p(z_{bge})` are the model
    site's marginals (``Independent`` base densities, Normal marginals of a
    MultivariateNormal). A prior whose parameters vary across the batch
    (:math:`p(z_1 \mid z_2)`) has no closed-form marginal; its group and variable
    marginals are then estimated by the uniform mixture over the batch,
    :math:`\log \frac{1}{B}\sum_{b'} p(z_{b} \mid \mathrm{pa}_{b'})`, and the sites of a
    group are taken as independent under the prior for the group marginal.
    The joint :math:`\log p(z_b)` is always the model's exact density.

    **Structured guides.** Where the guide conditions one group on another
    (:math:`q(z \mid x, y)`), the pairwise table scores :math:`z_b` under
    :math:`q(z \mid x_{b'}, y_{b'})`: an approximation, exact for guides that factorise
    across groups.

    Latent sites outside the data plate take the plain ELBO terms :math:`\log p - \log q`.

    **Weights.** The dimension-wise KL always has weight 1, as in the paper, so
    ``HFVAELoss(beta, beta, beta)`` is *not* a beta-VAE (that is
    ``HITLoss(default_beta=beta)``). Because each total correlation is taken relative to
    the prior's, a group with a correlated Gaussian prior bounds its weight: at or above
    :func:`~pyro_hfvae.tc_weight_bound` (:math:`(1 + \rho)/\rho` for a
    pair with correlation :math:`\rho`) the objective is unbounded below, and the loss
    warns once per site.

    After each evaluation :attr:`terms` holds, in nats per data point (unscaled,
    averaged over the batch and the particles): ``log_likelihood``, ``mutual_info``,
    ``tc_between``, ``tc_within`` (``tc_within_2``, ... for deeper trees), ``dimwise_kl``,
    ``kl`` (their sum, :math:`\log q(z|x) - \log p(z)`), ``elbo``, ``objective``, the same per
    group (``dimwise_kl/<group>``, ``tc_within/<group>`` for every group with more than one
    child) and, where global latent or observed sites exist, ``global_elbo`` (in nats,
    scaled as Pyro scales it). For a subsampled data plate without other scales,
    ``loss == -N * objective - global_elbo``.

    :param float alpha: weight of the index-code mutual information.
    :param float beta: weight of the total correlation between top-level groups.
    :param float gamma: weight of the total correlation within groups.
    :param level_weights: weights of the total correlations at deeper levels of nested groups.
    :param int dataset_size: ``N`` where the data plate is not subsampled.
    :param str data_plate: the data plate's name, where the guide has several plates.
    :param str concrete_scoring: ``"relaxed"`` (default) scores Concrete sites with the relaxed
        density (as :class:`~pyro.infer.Trace_ELBO`), computed in log space so it stays finite
        at low temperature; ``"argmax"`` scores them by the categorical probability of the
        sample's argmax (probtorch's choice: biased, but low-variance).
    :param float pairwise_memory_mb: budget for the ``B x B`` pairwise tables; larger batches
        are processed in chunks of rows, recomputed in the backward pass.
    :param int num_particles: number of particles.
    :param int max_plate_nesting: bound on nested plates.
    :param bool vectorize_particles: evaluate particles in one vectorized pass.
    :param bool strict_enumeration_warning: passed to :class:`~pyro.infer.ELBO`.
    :param bool retain_graph: passed to ``backward``.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro_hfvae import HFVAELoss, group
        >>> data = torch.randn(8, 3)
        >>> def model(x):
        ...     with pyro.plate("data", size=100, subsample=torch.arange(8)):
        ...         z = pyro.sample("z", dist.Normal(0., 1.).expand([2]).to_event(1))
        ...         pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.).to_event(1), obs=x)
        >>> def guide(x):
        ...     with pyro.plate("data", size=100, subsample=torch.arange(8)), group("style"):
        ...         pyro.sample("z", dist.Normal(x[:, :2], 1.).to_event(1))
        >>> loss = HFVAELoss(beta=4.0)
        >>> value = loss.loss(model, guide, data)
        >>> sorted(loss.terms)[:4]
        ['dimwise_kl', 'dimwise_kl/style', 'elbo', 'kl']

    References

    [1] Structured Disentangled Representations,
        Babak Esmaeili, Hao Wu, Sarthak Jain, Alican Bozkurt, N. Siddharth, Brooks Paige,
        Dana H. Brooks, Jennifer Dy, Jan-Willem van de Meent (AISTATS 2019)
    [2] Isolating Sources of Disentanglement in Variational Autoencoders,
        Ricky T. Q. Chen, Xuechen Li, Roger Grosse, David Duvenaud (NeurIPS 2018)
    """

    loss_name = "HFVAELoss"

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 1.0,
        *,
        level_weights: Sequence[float] = (),
        dataset_size: int | None = None,
        data_plate: str | None = None,
        concrete_scoring: str = "relaxed",
        pairwise_memory_mb: float = 1024.0,
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
        weights = {"alpha": alpha, "beta": beta, "gamma": gamma}
        weights.update({f"level_weights[{i}]": w for i, w in enumerate(level_weights)})
        for name, value in weights.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"expected {name} to be a finite number but got {value!r}")
        if concrete_scoring not in _CONCRETE_SCORING:
            raise ValueError(f"expected concrete_scoring in {_CONCRETE_SCORING} but got {concrete_scoring!r}")
        if dataset_size is not None and dataset_size < 2:
            raise ValueError(f"expected dataset_size >= 2 but got {dataset_size}")
        if pairwise_memory_mb <= 0:
            raise ValueError(f"expected pairwise_memory_mb > 0 but got {pairwise_memory_mb}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.level_weights = tuple(float(w) for w in level_weights)
        self.dataset_size = dataset_size
        self.data_plate = data_plate
        self.concrete_scoring = concrete_scoring
        self.pairwise_memory_mb = float(pairwise_memory_mb)
        self._warned_unbounded: set[str] = set()

    def _tc_weight(self, depth: int) -> float:
        weights = (self.beta, self.gamma) + self.level_weights
        if depth >= len(weights):
            raise ValueError(
                f"HFVAELoss expected a weight for the total correlation at depth {depth} of the group tree but "
                f"got only beta, gamma and level_weights={list(self.level_weights)}; pass "
                f"level_weights= with {depth - 1} entries"
            )
        return weights[depth]

    def _score(self, fn: Distribution, value: torch.Tensor, var_ndim: int) -> torch.Tensor:
        if self.concrete_scoring == "argmax":
            base = _unwrap(fn)
            if isinstance(base, RelaxedOneHotCategorical):
                return Categorical(logits=base.logits, validate_args=False).log_prob(value.argmax(-1))
        return variable_log_prob(fn, value, var_ndim)

    def _particle_loss(self, model_trace: Trace, guide_trace: Trace):
        layout = PlateLayout.from_trace(
            guide_trace,
            data_plate=self.data_plate,
            dataset_size=self.dataset_size,
            require_dataset_size=True,
            loss_name=self.loss_name,
        )
        site_log_probs = {}
        elbo_global = 0.0
        elbo_datum = 0.0  # (P, B), scaled and masked as Pyro does
        log_likelihood = 0.0  # (P, B), unscaled
        guided = {name for name, _ in latent_sites(guide_trace)}
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or name in guided:
                continue
            log_prob = self._score(site["fn"], soft_value(site["value"]), 0)
            site_log_probs[name] = log_prob
            scaled = scale_and_mask(log_prob, site["scale"], site["mask"])
            if layout.in_data_plate(site):
                elbo_datum = elbo_datum + layout.per_datum(scaled)
                log_likelihood = log_likelihood + layout.per_datum(scale_and_mask(log_prob, 1.0, site["mask"]))
            else:
                elbo_global = elbo_global + scaled.sum()

        data_sites = {}
        for name, guide_site in latent_sites(guide_trace):
            model_site = model_trace.nodes[name]
            value = soft_value(guide_site["value"])
            log_q = self._score(guide_site["fn"], value, 0)
            log_p = self._score(model_site["fn"], value, 0)
            site_log_probs[name] = log_q
            site_log_probs[name + " (prior)"] = log_p
            scaled = scale_and_mask(log_p, model_site["scale"], model_site["mask"]) - scale_and_mask(
                log_q, guide_site["scale"], guide_site["mask"]
            )
            if not layout.in_data_plate(guide_site):
                elbo_global = elbo_global + scaled.sum()
                continue
            batch_ndim = value.dim() - guide_site["fn"].event_dim
            elbo_datum = elbo_datum + layout.per_datum(scaled)
            data_sites[name] = (guide_site, model_site, value, batch_ndim, log_q, log_p)

        if not data_sites:
            raise ValueError("HFVAELoss expected latent sites inside the data plate but found none")
        scale, mask = self._datum_scale_and_mask(layout, data_sites)
        decomposition = self._decompose(layout, data_sites)
        extra = (self.alpha - 1.0) * decomposition["mutual_info"]
        for depth, tc in decomposition["tc_levels"].items():
            extra = extra + (self._tc_weight(depth) - 1.0) * tc
        penalty = (scale * mask * extra).sum() if isinstance(extra, torch.Tensor) else 0.0
        total_datum = elbo_datum.sum() if isinstance(elbo_datum, torch.Tensor) else elbo_datum
        loss = -(total_datum + elbo_global) + penalty

        def batch_mean(t):
            return (mask * t).mean(-1).sum(0)

        terms = {"log_likelihood": batch_mean(log_likelihood)} if isinstance(log_likelihood, torch.Tensor) else {}
        terms.setdefault("log_likelihood", torch.zeros(()))
        objective = terms["log_likelihood"] - batch_mean(
            self.alpha * decomposition["mutual_info"] + decomposition["dimwise_kl"]
        )
        terms["mutual_info"] = batch_mean(decomposition["mutual_info"])
        for depth, tc in decomposition["tc_levels"].items():
            name = {0: "tc_between", 1: "tc_within"}.get(depth, f"tc_within_{depth}")
            terms[name] = batch_mean(tc)
            objective = objective - self._tc_weight(depth) * terms[name]
        terms["dimwise_kl"] = batch_mean(decomposition["dimwise_kl"])
        kl = decomposition["log_q"] - decomposition["log_p"]
        terms["kl"] = batch_mean(kl)
        terms["elbo"] = terms["log_likelihood"] - terms["kl"]
        terms["objective"] = objective
        for key, value in decomposition["per_group"].items():
            terms[key] = batch_mean(value)
        if isinstance(elbo_global, torch.Tensor):
            terms["global_elbo"] = elbo_global.detach()
        return loss, terms, site_log_probs

    def _datum_scale_and_mask(self, layout: PlateLayout, data_sites: dict) -> tuple[float, torch.Tensor]:
        scales, masks = {}, {}
        for name, (guide_site, model_site, value, batch_ndim, _, _) in data_sites.items():
            for side, site in (("guide", guide_site), ("model", model_site)):
                scale = site["scale"]
                if isinstance(scale, torch.Tensor):
                    if scale.numel() != 1:
                        raise ValueError(
                            f"HFVAELoss expected a scalar scale on latent sites in the data plate but {side} site "
                            f"{name!r} has a scale of shape {tuple(scale.shape)}; weight data points with "
                            "poutine.mask or scale the whole model and guide"
                        )
                    scale = scale.item()
                scales[(side, name)] = float(scale)
                mask = site["mask"]
                if mask is None or mask is True:
                    continue
                mask = torch.as_tensor(mask, device=value.device).expand(value.shape[:batch_ndim])
                mask = layout.front(mask, batch_ndim)
                mask = mask.reshape(mask.shape[:2] + (-1,))
                if not (mask.all(-1) == mask.any(-1)).all():
                    raise ValueError(
                        f"HFVAELoss expected masks on latent sites to select whole data points but {side} site "
                        f"{name!r} masks parts of a data point; mask observed sites instead"
                    )
                masks[(side, name)] = mask[..., 0].expand(layout.num_particles, layout.batch_size)
        if len(set(scales.values())) > 1:
            raise ValueError(
                f"HFVAELoss expected one scale for all latent sites in the data plate but got {scales}; "
                "apply poutine.scale to the whole model and guide"
            )
        first = next(iter(masks.values()), None)
        for key, mask in masks.items():
            if len(masks) != 2 * len(data_sites) or not torch.equal(mask, first):
                raise ValueError(
                    f"HFVAELoss expected the same mask on every latent site in the data plate (model and guide) "
                    f"but {key[0]} site {key[1]!r} differs; apply poutine.mask around the whole model and guide"
                )
        device = next(iter(data_sites.values()))[2].device
        mask = torch.ones(layout.num_particles, layout.batch_size, device=device) if first is None else first.float()
        return next(iter(scales.values())), mask

    def _decompose(self, layout: PlateLayout, data_sites: dict) -> dict:
        site_groups = {}
        for name, (guide_site, model_site, *_rest) in data_sites.items():
            guide_group, model_group = site_group(guide_site), site_group({"infer": model_infer(model_site)})
            if model_group is not None and guide_group is not None and model_group != guide_group:
                raise ValueError(
                    f"HFVAELoss expected model and guide to agree on the group of site {name!r} but the guide says "
                    f"{guide_group!r} and the model says {model_group!r}; name the group on one side only"
                )
            site_groups[name] = guide_group if guide_group is not None else model_group
        tree = build_group_tree(site_groups)
        nodes = tree.internal_nodes()
        var_ndims = {name: variable_ndim(s[0]["fn"]) for name, s in data_sites.items()}
        num_vars = {name: self._num_variables(layout, data_sites[name], var_ndims[name]) for name in data_sites}

        def num_children(node: GroupNode) -> int:
            return sum(num_vars[s] for s in node.sites) + len(node.children)

        # A node with one child has no total correlation; the rest need a weight.
        tc_weights = {n.path: self._tc_weight(n.depth) for n in nodes if num_children(n) >= 2}
        self._warn_unbounded(data_sites, nodes, tc_weights, num_vars)
        log_q = sum(layout.per_datum(s[4]) for s in data_sites.values())
        log_p = sum(layout.per_datum(s[5]) for s in data_sites.values())

        # Prior marginals of batch-invariant priors are exact; others come from the batch mixture.
        prior_var, prior_site, mixture_sites = {}, {}, []
        for name, (guide_site, model_site, value, batch_ndim, _, log_p_site) in data_sites.items():
            if _is_batch_invariant(model_site["fn"], layout.data_dim):
                lp = self._score(model_site["fn"], value, var_ndims[name])
                lp = layout.front(lp, batch_ndim)
                prior_var[name] = lp.reshape(lp.shape[:2] + (-1,)).expand(layout.num_particles, layout.batch_size, -1)
                prior_site[name] = layout.per_datum(log_p_site)
            else:
                mixture_sites.append(name)

        # With all weights 1 the decomposition is only reported: keep it out of the autograd graph.
        need_grad = torch.is_grad_enabled() and (self.alpha != 1.0 or any(w != 1.0 for w in tc_weights.values()))
        with torch.set_grad_enabled(need_grad):
            marginals = tree_marginals(
                layout,
                tree,
                {name: s[2] for name, s in data_sites.items()},
                {name: s[0]["fn"] for name, s in data_sites.items()},
                lambda name, fn, value: self._score(fn, value, var_ndims[name]),
                num_vars,
                prior_fns={name: data_sites[name][1]["fn"] for name in mixture_sites},
                pairwise_memory_mb=self.pairwise_memory_mb,
            )
        q_var, q_node = marginals.variables, marginals.nodes
        prior_var.update(marginals.prior_variables)
        prior_site.update(marginals.prior_sites)

        def p_node(node: GroupNode) -> torch.Tensor:
            return log_p if node.depth == 0 else sum(prior_site[s] for s in node.all_sites())

        tc_levels = {0: torch.zeros_like(log_q), 1: torch.zeros_like(log_q)}
        per_group = {}
        for node in nodes:
            if node.path not in tc_weights:
                continue
            q_children = [q_var[s].sum(-1) for s in node.sites] + [q_node[c.path] for c in node.children]
            p_children = [prior_var[s].sum(-1) for s in node.sites] + [p_node(c) for c in node.children]
            tc = (q_node[node.path] - sum(q_children)) - (p_node(node) - sum(p_children))
            tc_levels[node.depth] = tc_levels.get(node.depth, 0.0) + tc
            if node.depth >= 1:
                per_group[f"tc_within/{node.path}"] = tc
        for group in tree.children:
            per_group[f"dimwise_kl/{group.path}"] = sum((q_var[s] - prior_var[s]).sum(-1) for s in group.all_sites())
        dimwise_kl = sum(per_group[f"dimwise_kl/{g.path}"] for g in tree.children)
        return {
            "log_q": log_q,
            "log_p": log_p,
            "mutual_info": log_q - q_node[""],
            "tc_levels": tc_levels,
            "dimwise_kl": dimwise_kl,
            "per_group": per_group,
        }

    def _warn_unbounded(self, data_sites: dict, nodes: list, tc_weights: dict, num_vars: dict) -> None:
        """Warns (once per site) where a correlated prior makes the objective unbounded below."""
        for node in nodes:
            weight = tc_weights.get(node.path, 1.0)
            if weight <= 1.0:
                continue
            for name in node.sites:
                # Cheap tests first: the bound needs an eigendecomposition (and a device sync).
                if num_vars[name] < 2 or name in self._warned_unbounded:
                    continue
                bound = tc_weight_bound(data_sites[name][1]["fn"])
                if weight >= bound:
                    self._warned_unbounded.add(name)
                    warnings.warn(
                        f"HFVAELoss: the total-correlation weight {weight:g} on group {node.path!r} is at or above "
                        f"{bound:.4g}, the bound set by the correlated prior of site {name!r}; the objective is "
                        "unbounded below there (the code can stretch along the prior's correlated direction). "
                        "Use a weight below the bound (see pyro_hfvae.infer.weight_bound)",
                        RuntimeWarning,
                        stacklevel=2,
                    )

    @staticmethod
    def _num_variables(layout: PlateLayout, data_site: tuple, var_ndim: int) -> int:
        guide_site, _, value, batch_ndim, _, _ = data_site
        in_plates = value.shape[:batch_ndim].numel() // (layout.num_particles * layout.batch_size)
        return in_plates * guide_site["fn"].event_shape[:var_ndim].numel()
