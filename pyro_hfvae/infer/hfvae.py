# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import dataclasses
import functools
import logging
from typing import Any, Sequence

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine import Trace
from torch.distributions import Distribution

from pyro_hfvae.distributions.util import is_batch_invariant, variable_log_prob
from pyro_hfvae.infer._decomposition import (
    Pieces,
    label_log_prob,
    merge_labelled,
    particle_terms,
    weighted_extra,
)
from pyro_hfvae.infer._global_batch import agree_across_ranks
from pyro_hfvae.infer._structure import DataSite, Structure, analyse_structure, datum_scale_and_mask
from pyro_hfvae.infer.terms_elbo import (
    TermsELBO,
    check_concrete_scoring,
    check_dataset_size,
    check_weight,
    log_space_sites,
)
from pyro_hfvae.ops.aggregate_posterior import VariableScore, tree_marginals
from pyro_hfvae.ops.distributed import rank_and_world_size
from pyro_hfvae.ops.fused_marginals import check_kernel
from pyro_hfvae.ops.mixture import check_memory_budget
from pyro_hfvae.poutine.groups import GroupNode
from pyro_hfvae.poutine.plate_layout import PlateLayout
from pyro_hfvae.poutine.trace_structure import SiteRoles

logger = logging.getLogger(__name__)

__all__ = [
    "HFVAELoss",
]


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    if isinstance(value, Pieces):
        return Pieces(*(_detach(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_detach(v) for v in value)
    return value


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

    **Partially observed groups (semi-supervised).** A latent site observed for some data
    points (a label) is sampled in the model with ``obs=`` the labels and ``obs_mask=`` the
    labelled points; Pyro splits it into an observed ``name_observed`` (masked by
    ``obs_mask``), a latent ``name_unobserved`` (masked by ``~obs_mask``) and a deterministic
    ``name``. The guide samples ``name_unobserved`` under the same mask,
    ``poutine.mask(mask=~obs_mask)``, from the classifier :math:`q(y \mid x)`; it may
    condition other groups on the label where there is one. A labelled data point then
    enters through the likelihood, :math:`\log p(y = \text{label})` (a Concrete is scored
    by the categorical probability of the label's class, its relaxed density being
    degenerate at a one-hot value), and the decomposition of every data point is over the
    sites latent for it: its marginals :math:`\hat q` of a labelled point leave the observed
    site out, so the labelled point takes no mutual information, total correlation or
    dimension-wise KL of the label group (the mixture components stay every point's
    posterior, as for masks). ``supervised_weight`` adds the classifier term
    :math:`w \log q(y = \text{label} \mid x)` of the labelled points (the reference's
    ``alpha``, 0.1 on MNIST), reported as ``supervised``. With every weight 1 and
    ``supervised_weight=0`` the loss is :class:`~pyro.infer.Trace_ELBO`'s (up to the scoring
    of a Concrete label). Masks of the split halves are complementary by construction;
    every other latent site keeps the rule above, and all sites sampled with ``obs_mask=``
    must share one (the labelled points). A whole batch of labelled points is
    ``obs_mask=`` all true (the same trace structure as a mixed batch).

    **Data-parallel training (global batch).** With ``global_batch=True`` each rank holds a
    shard of the batch and every aggregate-posterior marginal (each variable, each group node,
    the joint, and the batch-mixture prior marginals) is estimated over the *global* batch: the
    samples of the data-plate latent sites are gathered from all ranks, scored under this rank's
    posteriors, and the partial log-sum-exps are combined across ranks
    (:func:`~pyro_hfvae.ops.tree_marginals`, :mod:`pyro_hfvae.ops.distributed`); each rank keeps
    its own rows, and its loss keeps Pyro's scale ``N / B_r``. The mean of the ranks' losses and
    of their gradients (as DDP averages them) equal the single-process loss and gradients of
    the concatenated batch (for equal shards; with uneven ones the single-process loss is
    :math:`\sum_r (B_r / B) \mathcal L_r`), and :attr:`terms` are those of the rank's rows.
    *Every rank must call the loss alike*: the same structure (latent sites of the data plate,
    their shapes but the batch size, groups, weights, particles) and the same method, and call
    ``backward`` where it needs gradients, because the collectives run in the forward and the
    backward passes. One small status exchange per particle, before the collectives, makes every
    rank raise (never wait) when one failed before them (it raises its own error, the others
    :class:`~pyro_hfvae.ops.distributed.PeerRankError`) or the structures differ (``ValueError``).

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
    ``objective``), and where partially observed sites exist, ``supervised`` (the classifier
    term, 0 for unlabelled points; ``supervised_weight`` times it is part of ``objective``).
    For a subsampled data plate without other scales, ``loss == -N * objective - global_elbo``.

    Weights are finite numbers ``>= 0`` (Python or NumPy numbers, or 0-d tensors).

    :param float alpha: weight of the index-code mutual information.
    :param float beta: weight of the total correlation between top-level groups.
    :param float gamma: weight of the total correlation within groups.
    :param level_weights: weights of the total correlations at deeper levels of nested groups.
    :param int dataset_size: ``N`` (a positive int) where the data plate is not subsampled.
    :param str data_plate: the data plate's name, where the guide has several plates.
    :param str concrete_scoring: ``"relaxed"`` (default) scores Concrete sites with the relaxed
        density (as :class:`~pyro.infer.Trace_ELBO`); where prior and posterior are both
        Concrete, at the sample's exact logarithm under the ExpConcrete densities
        (:func:`~pyro_hfvae.infer.terms_elbo.log_space_sites`), which leaves the ELBO and every
        term unchanged and keeps a confident posterior's underflowed components exact;
        ``"argmax"`` scores them by the categorical probability of the sample's argmax
        (probtorch's choice: biased, but low-variance).
    :param float supervised_weight: weight (``>= 0``) of the classifier term
        :math:`\log q(y = \text{label} \mid x)` of the labelled data points of partially
        observed sites (default 0: the labels enter through the likelihood only).
    :param float pairwise_memory_mb: budget (finite, ``> 0``) for the ``B x B`` pairwise
        tables; larger batches are processed in chunks of rows, recomputed in the backward pass.
    :param str kernel: how the pairwise tables are built: ``"generic"`` (default) with
        ``Distribution.log_prob`` under autograd; ``"fused"`` runs Normal and (relaxed-scored)
        Concrete sites through fused kernels that keep only their inputs for the backward pass
        (:mod:`pyro_hfvae.ops.fused_marginals`; less memory, about 1.3x slower on a CPU);
        ``"compiled"`` runs those kernels through :func:`torch.compile`, several times faster
        at large batches (:class:`~pyro_hfvae.infer.jit.JitHFVAELoss`). Other distributions
        always take the generic path; values and gradients agree.
    :param bool global_batch: in a data-parallel run (an initialised :mod:`torch.distributed`
        process group, e.g. under ``torchrun``), estimate every marginal over the global batch
        of all ranks (see below); without a process group it raises a ``RuntimeError``.
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
        supervised_weight: float = 0.0,
        pairwise_memory_mb: float = 1024.0,
        kernel: str = "generic",
        global_batch: bool = False,
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
        self.supervised_weight = check_weight(name, "supervised_weight", supervised_weight)
        self.concrete_scoring = check_concrete_scoring(concrete_scoring)
        self.dataset_size = check_dataset_size(name, dataset_size)
        self.data_plate = data_plate
        self.pairwise_memory_mb = check_memory_budget(pairwise_memory_mb)
        self.kernel = check_kernel(kernel)
        if not isinstance(global_batch, bool):
            raise TypeError(f"{name} expected global_batch to be a bool but got {global_batch!r}")
        self.global_batch = global_batch
        self._warned_unbounded: set[str] = set()

    def tc_weights(self, tree: GroupNode, num_variables: dict[str, int]) -> dict[str, float]:
        """
        The weight of the total correlation at every internal node of a group tree that
        has one: ``beta`` at the root (between top-level groups), ``gamma`` at depth 1,
        ``level_weights[0]`` at depth 2, ... . A node with fewer than two children (its
        sites count by their variables) has no total correlation and is left out. The
        mutual information at the root has weight :attr:`alpha`.

        :param GroupNode tree: the group tree (:func:`~pyro_hfvae.poutine.groups.build_group_tree`).
        :param dict num_variables: site -> its number of variables per data point.
        :returns: node path -> weight (``""`` is the root).
        :rtype: dict
        :raises ValueError: where the tree is deeper than the weights given.

        Example::

            >>> from pyro_hfvae.poutine.groups import build_group_tree
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

    def _config_key(self) -> tuple:
        return (
            self.alpha,
            self.beta,
            self.gamma,
            self.level_weights,
            self.dataset_size,
            self.data_plate,
            self.concrete_scoring,
            self.global_batch,
        )

    def _analyse(self, model_trace: Trace, guide_trace: Trace, roles: SiteRoles) -> Structure:
        return analyse_structure(self, model_trace, guide_trace, roles)

    def _get_trace(self, model, guide, args, kwargs):
        if not self.global_batch:
            return super()._get_trace(model, guide, args, kwargs)
        rank_and_world_size()  # raises without a process group
        try:
            return super()._get_trace(model, guide, args, kwargs)
        except Exception as error:
            # The other ranks wait in _particle_loss's exchange: tell them, then raise this rank's error.
            agree_across_ranks(self.loss_name, None, 0, 0, error)
            raise

    def _particle_loss(self, model_trace: Trace, guide_trace: Trace, structure: Structure):
        error = None
        try:
            local = self._local_loss(model_trace, guide_trace, structure)
        except Exception as caught:  # with global_batch, the other ranks learn of it before it is raised
            if not self.global_batch:
                raise
            local, error = None, caught
        if self.global_batch:
            layout = structure.layout
            summary, batch_size, mixture = None, 0, 0
            if local is not None:
                summary = f"{structure.summary}, grad {torch.is_grad_enabled()}"
                batch_size = 0 if layout is None else layout.batch_size
                mixture = sum(1 << i for i, name in enumerate(local[2]) if name in local[-1])
            sizes, mixture = agree_across_ranks(self.loss_name, summary, batch_size, mixture, error)
            if structure.tree is not None:  # the same on every rank: checked on the global batch
                dataclasses.replace(layout, batch_size=sum(sizes)).require_marginals(
                    f"{self.loss_name} (global batch of {len(sizes)} ranks, {list(sizes)} data points by rank)"
                )
            local = local[:-1] + (tuple(name for i, name in enumerate(local[2]) if mixture >> i & 1),)
        return self._decomposed_loss(model_trace, structure, *local)

    def _local_loss(self, model_trace: Trace, guide_trace: Trace, structure: Structure) -> tuple:
        """Everything of a particle's loss before the marginals: all that can raise, and no collective."""
        layout = structure.layout
        site_log_probs = {}
        labels = set(structure.partial.values())
        elbo = None  # as Pyro scales and masks it, in total
        global_parts, scored = [], []
        sides = ((1.0, model_trace, structure.model_only, ""), (-1.0, guide_trace, structure.guide_only, " (guide)"))
        for sign, trace, names, suffix in sides:
            for name, local in names:
                site = trace.nodes[name]
                if sign > 0 and name in labels:
                    log_prob = label_log_prob(site["fn"], site["value"])
                else:
                    log_prob = self._score(site["fn"], site["value"], 0)
                site_log_probs[name + suffix] = log_prob
                part = scale_and_mask(log_prob, site["scale"], site["mask"]).sum()
                part = part if sign > 0 else -part
                elbo = part if elbo is None else elbo + part
                if local:
                    scored.append((sign, log_prob, site["mask"]))
                else:
                    global_parts.append(part)
        data = {}
        for name, local in structure.latent:
            guide_site, model_site = guide_trace.nodes[name], model_trace.nodes[name]
            if self.concrete_scoring == "relaxed":
                guide_site, model_site = log_space_sites(guide_site, model_site)
            value = guide_site["value"]
            log_q = self._score(guide_site["fn"], value, 0)
            log_p = self._score(model_site["fn"], value, 0)
            site_log_probs[name] = log_q
            site_log_probs[name + " (prior)"] = log_p
            part = (
                scale_and_mask(log_p, model_site["scale"], model_site["mask"])
                - scale_and_mask(log_q, guide_site["scale"], guide_site["mask"])
            ).sum()
            elbo = part if elbo is None else elbo + part
            if local:
                if name in structure.partial:  # its labelled data points take no part in the decomposition
                    log_q, log_p = (scale_and_mask(lp, 1.0, model_site["mask"]) for lp in (log_q, log_p))
                data[name] = DataSite(guide_site, model_site, value, structure.batch_ndims[name], log_q, log_p)
            else:
                global_parts.append(part)
        loss = torch.zeros(()) if elbo is None else -elbo

        scale, mask, labelled, mixture_sites = structure.scale, None, None, ()
        if data:
            if structure.per_step_scale_and_mask:
                observed = {name: model_trace.nodes[half] for name, half in structure.partial.items()}
                scale, mask, labelled = datum_scale_and_mask(layout, data, observed)
            # Prior marginals of batch-invariant priors are exact; others come from the batch mixture.
            mixture_sites = tuple(name for name, s in data.items()
                                  if not is_batch_invariant(s.model_site["fn"], layout.data_dim))
        return loss, site_log_probs, data, global_parts, scored, scale, mask, labelled, mixture_sites

    def _decomposed_loss(
        self, model_trace: Trace, structure: Structure, loss: torch.Tensor, site_log_probs: dict, data: dict,
        global_parts: list, scored: list, scale: float, mask: torch.Tensor | None, labelled: torch.Tensor | None,
        mixture_sites: tuple,
    ):
        """A particle's loss and terms from :meth:`_local_loss`'s parts: the marginals and what depends on them."""
        layout = structure.layout
        pieces, supervised = None, None
        if data:
            pieces = self._marginals(layout, structure, data, mixture_sites)
            if structure.partial:
                pieces, supervised = self._labelled(layout, structure, model_trace, data, pieces, labelled,
                                                    mixture_sites)
                if self.supervised_weight:
                    kept = supervised if mask is None else torch.where(mask, supervised, 0.0)
                    loss = loss - (self.supervised_weight * scale) * kept.sum()
            extra = weighted_extra(self.alpha, layout, structure, data, pieces)
            if extra is not None:
                loss = loss + scale * (extra if mask is None else torch.where(mask, extra, 0.0)).sum()
        terms = functools.partial(
            particle_terms,
            self.alpha,
            self.beta,
            self.gamma,
            self.supervised_weight,
            layout,
            structure,
            _detach(scored),
            _detach([(s.log_q, s.log_p) for s in data.values()]),
            _detach(pieces),
            mask,
            _detach(global_parts),
            _detach(supervised),
        )
        return loss, terms, site_log_probs

    def _labelled(
        self,
        layout: PlateLayout,
        structure: Structure,
        model_trace: Trace,
        data: dict,
        pieces: Pieces,
        labelled: torch.Tensor,
        mixture_sites: tuple,
    ) -> tuple[Pieces, torch.Tensor]:
        r"""
        The marginals of the latent sites of each data point (:func:`merge_labelled`) and the
        ``(P, B)`` classifier term :math:`\log q(y = \text{label} \mid x)` of the labelled data points.
        """
        latent = {name: s for name, s in data.items() if name not in structure.partial}
        restricted = None
        if structure.labelled_tree is not None:
            restricted = self._marginals(layout, dataclasses.replace(structure, tree=structure.labelled_tree), latent,
                                         mixture_sites)
        pieces = merge_labelled(pieces, restricted, labelled, tuple(structure.partial))
        supervised = None
        for name, half in structure.partial.items():
            guide_fn, label = data[name].guide_site["fn"], model_trace.nodes[half]["value"]
            log_q = layout.per_datum(label_log_prob(guide_fn, label, masked=False))
            supervised = log_q if supervised is None else supervised + log_q
        return pieces, torch.where(labelled, supervised, 0.0)

    def _marginals(self, layout: PlateLayout, structure: Structure, data: dict, mixture_sites: tuple) -> Pieces:
        """
        The aggregate-posterior and prior marginals of the latent sites in the data plate;
        those of ``mixture_sites`` (batch-dependent priors) by the batch mixture.
        """
        var_ndims = structure.var_ndims
        prior_var, prior_site = {}, {}
        mixture_sites = [name for name in data if name in mixture_sites]
        for name, s in data.items():
            if name not in mixture_sites:
                lp = layout.front(self._score(s.model_site["fn"], s.value, var_ndims[name], False), s.batch_ndim)
                prior_var[name] = lp.reshape(lp.shape[:2] + (-1,)).expand(layout.num_particles, layout.batch_size, -1)
                prior_site[name] = layout.per_datum(s.log_p)

        # With all weights 1 the decomposition is only reported: keep it out of the autograd graph.
        with torch.set_grad_enabled(torch.is_grad_enabled() and structure.weighted):
            # Masked-out data points stay components of the mixtures: score without the masks.
            marginals = tree_marginals(
                layout,
                structure.tree,
                {name: s.value for name, s in data.items()},
                {name: s.guide_site["fn"] for name, s in data.items()},
                VariableScore(var_ndims, masked=False, concrete=self.concrete_scoring),  # = self._score
                structure.num_vars,
                prior_fns={name: data[name].model_site["fn"] for name in mixture_sites},
                pairwise_memory_mb=self.pairwise_memory_mb,
                kernel=self.kernel,
                global_batch=self.global_batch,
            )
        prior_var.update(marginals.prior_variables)
        prior_site.update(marginals.prior_sites)
        return Pieces(marginals.variables, marginals.nodes, prior_var, prior_site)
