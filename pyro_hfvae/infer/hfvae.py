# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine import Trace
from torch.distributions import Distribution

from pyro_hfvae.distributions.util import (
    CONCRETE_SCORINGS,
    is_batch_invariant,
    latent_sites,
    variable_log_prob,
    variable_ndim,
)
from pyro_hfvae.infer.groups import GroupNode, build_group_tree, site_groups
from pyro_hfvae.infer.plate_layout import PlateLayout
from pyro_hfvae.infer.terms_elbo import TermsELBO, check_dataset_size, check_weight, guide_only_sites
from pyro_hfvae.infer.weight_bound import tc_weight_bound
from pyro_hfvae.ops.aggregate_posterior import VariableScore, tree_marginals
from pyro_hfvae.ops.fused_marginals import check_kernel
from pyro_hfvae.ops.mixture import check_memory_budget

logger = logging.getLogger(__name__)

__all__ = [
    "HFVAELoss",
]


class _DataSite(NamedTuple):
    """A latent site inside the data plate: both sides, the value and its log densities."""

    guide_site: dict
    model_site: dict
    value: torch.Tensor
    batch_ndim: int
    log_q: torch.Tensor  # masked as Pyro masks, unscaled
    log_p: torch.Tensor


@dataclass
class _Scored:
    """Every site scored once: ELBO pieces per data point ``(P, B)`` or in total."""

    site_log_probs: dict = field(default_factory=dict)
    data_sites: dict = field(default_factory=dict)
    elbo_global: Any = 0.0  # scaled and masked, summed
    elbo_datum: Any = 0.0  # (P, B), scaled and masked
    log_likelihood: Any = 0.0  # (P, B), unscaled
    auxiliary: Any = 0.0  # (P, B), unscaled: minus the guide's log density of guide-only sites


def _total(value: Any) -> Any:
    return value.sum() if isinstance(value, torch.Tensor) else value


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

    Latent sites outside the data plate take the plain ELBO terms :math:`\log p - \log q`;
    with no latent site inside it (only global latents, or an empty guide) there is nothing
    to decompose and the loss is :class:`~pyro.infer.Trace_ELBO`'s. Auxiliary and observed
    guide sites contribute minus their guide log density, as in ``Trace_ELBO``.

    **Masks.** ``poutine.mask`` and ``Distribution.mask`` count as in ``Trace_ELBO``. On a
    latent site in the data plate a mask must select whole data points and be the same on
    every such site (model and guide); a masked-out data point contributes none of its own
    terms, but its posterior stays a component of the aggregate-posterior mixture
    :math:`\hat q` of the other points (its guide parameters must be finite), so that the
    marginals of the kept points do not depend on the mask.

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
    scaled as Pyro scales it), and where auxiliary or observed guide sites exist in the
    data plate, ``auxiliary`` (minus their guide log density; part of ``elbo`` and
    ``objective``). For a subsampled data plate without other scales,
    ``loss == -N * objective - global_elbo``.

    Weights are finite numbers ``>= 0`` (Python or NumPy numbers, or 0-d tensors).

    :param float alpha: weight of the index-code mutual information.
    :param float beta: weight of the total correlation between top-level groups.
    :param float gamma: weight of the total correlation within groups.
    :param level_weights: weights of the total correlations at deeper levels of nested groups.
    :param int dataset_size: ``N`` (a positive int) where the data plate is not subsampled.
    :param str data_plate: the data plate's name, where the guide has several plates.
    :param str concrete_scoring: ``"relaxed"`` (default) scores Concrete sites with the relaxed
        density (as :class:`~pyro.infer.Trace_ELBO`), computed in log space so it stays finite
        at low temperature; ``"argmax"`` scores them by the categorical probability of the
        sample's argmax (probtorch's choice: biased, but low-variance).
    :param float pairwise_memory_mb: budget (finite, ``> 0``) for the ``B x B`` pairwise
        tables; larger batches are processed in chunks of rows, recomputed in the backward pass.
    :param str kernel: how the pairwise tables are built: ``"generic"`` (default) with
        ``Distribution.log_prob`` under autograd; ``"fused"`` runs Normal and (relaxed-scored)
        Concrete sites through fused kernels that keep only their inputs for the backward pass
        (:mod:`pyro_hfvae.ops.fused_marginals`; less memory, about 1.3x slower on a CPU);
        ``"compiled"`` runs those kernels through :func:`torch.compile`, several times faster
        at large batches (:class:`~pyro_hfvae.infer.jit.JitHFVAELoss`). Other distributions
        always take the generic path; values and gradients agree.
    :param int num_particles: number of particles.
    :param int max_plate_nesting: bound on nested plates.
    :param bool vectorize_particles: evaluate particles in one vectorized pass.
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
        kernel: str = "generic",
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
        name = self.loss_name
        self.alpha = check_weight(name, "alpha", alpha)
        self.beta = check_weight(name, "beta", beta)
        self.gamma = check_weight(name, "gamma", gamma)
        self.level_weights = tuple(check_weight(name, f"level_weights[{i}]", w) for i, w in enumerate(level_weights))
        if concrete_scoring not in CONCRETE_SCORINGS:
            raise ValueError(f"expected concrete_scoring in {CONCRETE_SCORINGS} but got {concrete_scoring!r}")
        self.dataset_size = check_dataset_size(name, dataset_size)
        self.data_plate = data_plate
        self.concrete_scoring = concrete_scoring
        self.pairwise_memory_mb = check_memory_budget(pairwise_memory_mb)
        self.kernel = check_kernel(kernel)
        self._warned_unbounded: set[str] = set()

    def tc_weights(self, tree: GroupNode, num_variables: dict[str, int]) -> dict[str, float]:
        """
        The weight of the total correlation at every internal node of a group tree that
        has one: ``beta`` at the root (between top-level groups), ``gamma`` at depth 1,
        ``level_weights[0]`` at depth 2, ... . A node with fewer than two children (its
        sites count by their variables) has no total correlation and is left out. The
        mutual information at the root has weight :attr:`alpha`.

        :param GroupNode tree: the group tree (:func:`~pyro_hfvae.infer.groups.build_group_tree`).
        :param dict num_variables: site -> its number of variables per data point.
        :returns: node path -> weight (``""`` is the root).
        :rtype: dict
        :raises ValueError: where the tree is deeper than the weights given.

        Example::

            >>> from pyro_hfvae.infer.groups import build_group_tree
            >>> tree = build_group_tree({"y": "class", "z": "style"})
            >>> HFVAELoss(beta=4.0, gamma=3.0).tc_weights(tree, {"y": 1, "z": 2})
            {'': 4.0, 'style': 3.0}
        """
        weights = (self.beta, self.gamma) + self.level_weights
        out = {}
        for node in tree.internal_nodes():
            if sum(num_variables[s] for s in node.sites) + len(node.children) < 2:
                continue
            if node.depth >= len(weights):
                raise ValueError(
                    f"HFVAELoss expected a weight for the total correlation at depth {node.depth} of the group "
                    f"tree but got only beta, gamma and level_weights={list(self.level_weights)}; pass "
                    f"level_weights= with {node.depth - 1} entries"
                )
            out[node.path] = weights[node.depth]
        return out

    def _score(self, fn: Distribution, value: torch.Tensor, var_ndim: int, masked: bool = True) -> torch.Tensor:
        return variable_log_prob(fn, value, var_ndim, masked=masked, concrete=self.concrete_scoring)

    def _score_sites(self, layout: PlateLayout | None, model_trace: Trace, guide_trace: Trace) -> _Scored:
        out = _Scored()

        def local(site: dict) -> bool:
            return layout is not None and layout.in_data_plate(site)

        guided = {name for name, _ in latent_sites(guide_trace)}
        scored = [(n, s, 1.0) for n, s in model_trace.nodes.items() if s["type"] == "sample" and n not in guided]
        scored += [(n, s, -1.0) for n, s in guide_only_sites(guide_trace)]
        for name, site, sign in scored:
            log_prob = self._score(site["fn"], site["value"], 0)
            out.site_log_probs[name if sign > 0 else name + " (guide)"] = log_prob
            scaled = sign * scale_and_mask(log_prob, site["scale"], site["mask"])
            if not local(site):
                out.elbo_global = out.elbo_global + scaled.sum()
                continue
            out.elbo_datum = out.elbo_datum + layout.per_datum(scaled)
            unscaled = sign * layout.per_datum(scale_and_mask(log_prob, 1.0, site["mask"]))
            if sign > 0:
                out.log_likelihood = out.log_likelihood + unscaled
            else:
                out.auxiliary = out.auxiliary + unscaled

        for name, guide_site in latent_sites(guide_trace):
            model_site = model_trace.nodes[name]
            value = guide_site["value"]
            log_q = self._score(guide_site["fn"], value, 0)
            log_p = self._score(model_site["fn"], value, 0)
            out.site_log_probs[name] = log_q
            out.site_log_probs[name + " (prior)"] = log_p
            scaled = scale_and_mask(log_p, model_site["scale"], model_site["mask"]) - scale_and_mask(
                log_q, guide_site["scale"], guide_site["mask"]
            )
            if not local(guide_site):
                out.elbo_global = out.elbo_global + scaled.sum()
                continue
            out.elbo_datum = out.elbo_datum + layout.per_datum(scaled)
            batch_ndim = value.dim() - guide_site["fn"].event_dim
            out.data_sites[name] = _DataSite(guide_site, model_site, value, batch_ndim, log_q, log_p)
        return out

    def _particle_loss(self, model_trace: Trace, guide_trace: Trace):
        layout = PlateLayout.from_trace(
            guide_trace,
            model_trace=model_trace,
            data_plate=self.data_plate,
            dataset_size=self.dataset_size,
            loss_name=self.loss_name,
        )
        scored = self._score_sites(layout, model_trace, guide_trace)
        loss = -(_total(scored.elbo_datum) + _total(scored.elbo_global))
        if not isinstance(loss, torch.Tensor):
            loss = torch.zeros(())
        if scored.data_sites:
            layout.require_marginals(self.loss_name)
            scale, mask = self._datum_scale_and_mask(layout, scored.data_sites)
            groups = site_groups(guide_trace, model_trace)
            decomposition = self._decompose(layout, scored.data_sites, groups)
            extra = (self.alpha - 1.0) * decomposition["mutual_info"]
            for depth, tc in decomposition["tc_levels"].items():
                extra = extra + (decomposition["weights"][depth] - 1.0) * tc
            loss = loss + scale * torch.where(mask, extra, 0.0).sum()
        else:
            mask, decomposition = None, None

        def batch_mean(t: Any, row_mask: torch.Tensor | None = None) -> torch.Tensor:
            # Per data point, averaged over the batch (masked-out points count as 0), summed over particles.
            if not isinstance(t, torch.Tensor):
                return torch.zeros(())
            return (t if row_mask is None else torch.where(row_mask, t, 0.0)).mean(-1).sum(0)

        # The observed and auxiliary sites carry their own masks; the latent ones the data-point mask.
        terms = {"log_likelihood": batch_mean(scored.log_likelihood)}
        terms.update(self._decomposition_terms(decomposition, lambda t: batch_mean(t, mask)))
        terms["elbo"] = terms["log_likelihood"] - terms["kl"]
        terms["objective"] = terms["log_likelihood"] - terms.pop("weighted_kl")
        if isinstance(scored.auxiliary, torch.Tensor):
            terms["auxiliary"] = batch_mean(scored.auxiliary)
            terms["elbo"] = terms["elbo"] + terms["auxiliary"]
            terms["objective"] = terms["objective"] + terms["auxiliary"]
        if isinstance(scored.elbo_global, torch.Tensor):
            terms["global_elbo"] = scored.elbo_global.detach()
        return loss, terms, scored.site_log_probs

    def _decomposition_terms(self, decomposition: dict | None, batch_mean) -> dict:
        """The decomposition's terms, and ``weighted_kl``: the weighted sum the objective subtracts."""
        if decomposition is None:
            zero = torch.zeros(())
            names = ["mutual_info", "tc_between", "tc_within", "dimwise_kl", "kl", "weighted_kl"]
            return dict.fromkeys(names, zero)
        terms = {"mutual_info": batch_mean(decomposition["mutual_info"])}
        weighted = self.alpha * terms["mutual_info"]
        for depth, tc in decomposition["tc_levels"].items():
            name = {0: "tc_between", 1: "tc_within"}.get(depth, f"tc_within_{depth}")
            terms[name] = batch_mean(tc)
            weighted = weighted + decomposition["weights"][depth] * terms[name]
        terms["dimwise_kl"] = batch_mean(decomposition["dimwise_kl"])
        terms["kl"] = batch_mean(decomposition["log_q"] - decomposition["log_p"])
        terms["weighted_kl"] = weighted + terms["dimwise_kl"]
        for key, value in decomposition["per_group"].items():
            terms[key] = batch_mean(value)
        return terms

    def _datum_scale_and_mask(self, layout: PlateLayout, data_sites: dict) -> tuple[float, torch.Tensor]:
        """The one scale of the latent sites in the data plate and their ``(P, B)`` data-point mask."""
        scales, masks = {}, {}
        for name, data_site in data_sites.items():
            for side, site in (("guide", data_site.guide_site), ("model", data_site.model_site)):
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
                try:
                    mask = layout.data_point_mask(site, data_site.value, data_site.batch_ndim)
                except ValueError as error:
                    raise ValueError(f"HFVAELoss: {side} site {name!r}: {error}") from None
                if mask is not None:
                    masks[(side, name)] = mask
        if len(set(scales.values())) > 1:
            raise ValueError(
                f"HFVAELoss expected one scale for all latent sites in the data plate but got {scales}; "
                "apply poutine.scale to the whole model and guide"
            )
        first = next(iter(masks.values()), None)
        for key in scales:  # a site without a mask keeps every data point
            mask = masks.get(key, True if first is None else torch.ones_like(first))
            if first is not None and not torch.equal(mask, first):
                raise ValueError(
                    f"HFVAELoss expected the same mask on every latent site in the data plate (model and guide) "
                    f"but {key[0]} site {key[1]!r} differs; apply poutine.mask (or the same .mask()) around the "
                    "whole model and guide"
                )
        device = next(iter(data_sites.values())).value.device
        if first is None:
            first = torch.ones(layout.num_particles, layout.batch_size, dtype=torch.bool, device=device)
        return next(iter(scales.values())), first

    def _decompose(self, layout: PlateLayout, data_sites: dict, groups: dict[str, str]) -> dict:
        tree = build_group_tree({name: groups[name] for name in data_sites})
        var_ndims = {name: variable_ndim(s.guide_site["fn"]) for name, s in data_sites.items()}
        num_vars = {name: self._num_variables(layout, s, var_ndims[name]) for name, s in data_sites.items()}
        tc_weights = self.tc_weights(tree, num_vars)
        nodes = tree.internal_nodes()
        self._warn_unbounded(data_sites, nodes, tc_weights, num_vars)
        log_q = sum(layout.per_datum(s.log_q) for s in data_sites.values())
        log_p = sum(layout.per_datum(s.log_p) for s in data_sites.values())

        # Prior marginals of batch-invariant priors are exact; others come from the batch mixture.
        prior_var, prior_site, mixture_sites = {}, {}, []
        for name, s in data_sites.items():
            if is_batch_invariant(s.model_site["fn"], layout.data_dim):
                lp = layout.front(self._score(s.model_site["fn"], s.value, var_ndims[name], False), s.batch_ndim)
                prior_var[name] = lp.reshape(lp.shape[:2] + (-1,)).expand(layout.num_particles, layout.batch_size, -1)
                prior_site[name] = layout.per_datum(s.log_p)
            else:
                mixture_sites.append(name)

        # With all weights 1 the decomposition is only reported: keep it out of the autograd graph.
        need_grad = torch.is_grad_enabled() and (self.alpha != 1.0 or any(w != 1.0 for w in tc_weights.values()))
        with torch.set_grad_enabled(need_grad):
            # Masked-out data points stay components of the mixtures: score without the masks.
            marginals = tree_marginals(
                layout,
                tree,
                {name: s.value for name, s in data_sites.items()},
                {name: s.guide_site["fn"] for name, s in data_sites.items()},
                VariableScore(var_ndims, masked=False, concrete=self.concrete_scoring),  # = self._score
                num_vars,
                prior_fns={name: data_sites[name].model_site["fn"] for name in mixture_sites},
                pairwise_memory_mb=self.pairwise_memory_mb,
                kernel=self.kernel,
            )
        q_var, q_node = marginals.variables, marginals.nodes
        prior_var.update(marginals.prior_variables)
        prior_site.update(marginals.prior_sites)

        def p_node(node: GroupNode) -> torch.Tensor:
            return log_p if node.depth == 0 else sum(prior_site[s] for s in node.all_sites())

        tc_levels = {0: torch.zeros_like(log_q), 1: torch.zeros_like(log_q)}
        weights = {0: self.beta, 1: self.gamma}
        per_group = {}
        for node in nodes:
            if node.path not in tc_weights:
                continue
            q_children = [q_var[s].sum(-1) for s in node.sites] + [q_node[c.path] for c in node.children]
            p_children = [prior_var[s].sum(-1) for s in node.sites] + [p_node(c) for c in node.children]
            tc = (q_node[node.path] - sum(q_children)) - (p_node(node) - sum(p_children))
            tc_levels[node.depth] = tc_levels.get(node.depth, 0.0) + tc
            weights[node.depth] = tc_weights[node.path]
            if node.depth >= 1:
                per_group[f"tc_within/{node.path}"] = tc
        for group in tree.children:
            per_group[f"dimwise_kl/{group.path}"] = sum((q_var[s] - prior_var[s]).sum(-1) for s in group.all_sites())
        return {
            "log_q": log_q,
            "log_p": log_p,
            "mutual_info": log_q - q_node[""],
            "tc_levels": tc_levels,
            "weights": weights,
            "dimwise_kl": sum(per_group[f"dimwise_kl/{g.path}"] for g in tree.children),
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
                bound = tc_weight_bound(data_sites[name].model_site["fn"])
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
    def _num_variables(layout: PlateLayout, data_site: _DataSite, var_ndim: int) -> int:
        in_plates = data_site.value.shape[: data_site.batch_ndim].numel() // (layout.num_particles * layout.batch_size)
        return in_plates * data_site.guide_site["fn"].event_shape[:var_ndim].numel()
