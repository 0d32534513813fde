# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
r"""
Minibatch-stratified estimates of aggregate-posterior marginals.

For a batch of ``B`` data points drawn from a data set of ``N``, the aggregate posterior
:math:`q(v) = \frac{1}{N}\sum_n q(v \mid x_n)` of any set of variables ``v`` is estimated at
the sample :math:`v_b` drawn for data point ``b`` by

.. math::

    \log \hat q(v_b) = \log \sum_{b'} W_{bb'}\, q(v_b \mid x_{b'}),\qquad
    W_{bb} = \frac{1}{N},\quad W_{bb'} = \frac{N-1}{N(B-1)}\ (b' \ne b),

whose rows sum to one (``N == B`` gives uniform weights ``1/B``), with the engine of
:mod:`pyro_hfvae.ops.mixture`: :func:`tree_marginals` for traced Pyro sites (what
:class:`~pyro_hfvae.HFVAELoss` calls), :func:`aggregate_log_marginals` for plain tensors
and torch distributions. With ``kernel="fused"`` or ``"compiled"`` Normal and Concrete
sites go through the fused kernels of :mod:`pyro_hfvae.ops.fused_marginals`.

References

[1] Structured Disentangled Representations,
    Babak Esmaeili, Hao Wu, Sarthak Jain, et al. (AISTATS 2019)
[2] Isolating Sources of Disentanglement in Variational Autoencoders,
    Ricky T. Q. Chen, Xuechen Li, Roger Grosse, David Duvenaud (NeurIPS 2018)
"""

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
import torch.distributed as dist
from torch.distributions import Distribution

from pyro_hfvae.distributions.util import soft_value, variable_log_prob, variable_ndim
from pyro_hfvae.ops.distributed import (
    GlobalBatch,
    _stratified_log_weight_values,
    gather_rows,
    global_logsumexp,
    global_stratified_log_weights,
)
from pyro_hfvae.ops.fused_marginals import FusedTable, check_kernel, fused_table
from pyro_hfvae.ops.mixture import LogMarginals, groups_to_tree, mixture_log_marginals
from pyro_hfvae.ops.pairwise import pairwise_log_prob
from pyro_hfvae.poutine.groups import GroupNode
from pyro_hfvae.poutine.plate_layout import PlateLayout

logger = logging.getLogger(__name__)

__all__ = [
    "TreeMarginals",
    "VariableScore",
    "aggregate_log_marginals",
    "stratified_log_weights",
    "tree_marginals",
]


def stratified_log_weights(rows: slice, batch_size: int, dataset_size: int, *, dtype=None, device=None) -> torch.Tensor:
    """
    Log weights :math:`\\log W_{bb'}` of the minibatch-stratified estimator for the rows ``b`` in ``rows``.

    :param slice rows: the rows ``b`` (a contiguous slice of ``range(batch_size)``).
    :param int batch_size: ``B`` (at least 2).
    :param int dataset_size: ``N`` (at least ``B``).
    :returns: a ``(len(rows), B)`` tensor whose rows ``logsumexp`` to 0.

    Example::

        >>> stratified_log_weights(slice(0, 2), 3, 10).exp()
        tensor([[0.1000, 0.4500, 0.4500],
                [0.4500, 0.1000, 0.4500]])
    """
    log_diag, log_off = _stratified_log_weight_values(batch_size, dataset_size)
    start, stop, _ = rows.indices(batch_size)
    weights = torch.full((stop - start, batch_size), log_off, dtype=dtype, device=device)
    index = torch.arange(stop - start, device=device)
    weights[index, index + start] = log_diag
    return weights


@dataclass
class TreeMarginals:
    """
    Log marginals at each data point's own sample, as ``(P, B, ...)`` tensors (``P``
    particles, ``B`` data points).

    :param dict variables: site -> ``(P, B, V)`` :math:`\\log \\hat q(z_{bge})`, one column per variable.
    :param dict nodes: group path -> ``(P, B)`` :math:`\\log \\hat q(z_{b,\\mathrm{node}})`;
        the root ``""`` is the joint :math:`\\log \\hat q(z_b)`.
    :param dict prior_variables: site -> ``(P, B, V)`` batch-mixture prior marginals
        :math:`\\log \\frac1B \\sum_{b'} p(z_{bge} \\mid \\mathrm{pa}_{b'})`, for the sites
        given ``prior_fns``.
    :param dict prior_sites: site -> ``(P, B)``, the same for the whole site.
    """

    variables: dict
    nodes: dict
    prior_variables: dict
    prior_sites: dict


@dataclass
class VariableScore:
    """
    The scoring ``score(name, fn, value)`` of :func:`tree_marginals` that it can hand to a
    fused kernel: :func:`~pyro_hfvae.distributions.variable_log_prob` with ``var_ndims[name]``
    variable dims and the given mask and Concrete options. Any other callable is scored
    through the generic table.

    :param dict var_ndims: site -> number of leading event dims that index variables.
    :param bool masked: apply the distributions' masks.
    :param str concrete: the Concrete scoring (``"relaxed"`` or ``"argmax"``).

    Example::

        >>> import pyro.distributions as dist, torch
        >>> VariableScore({"z": 1})("z", dist.Normal(torch.zeros(2), 1.0).to_event(1), torch.zeros(2))
        tensor([-0.9189, -0.9189])
    """

    var_ndims: dict = field(default_factory=dict)
    masked: bool = True
    concrete: str = "relaxed"

    def __call__(self, name: str, fn: Distribution, value: torch.Tensor) -> torch.Tensor:
        return variable_log_prob(fn, value, self.var_ndims[name], masked=self.masked, concrete=self.concrete)

    def fused(self, name: str, fn: Distribution, value: torch.Tensor, layout: PlateLayout,
              kernel: str, rows: torch.Tensor | None = None) -> FusedTable | None:
        """The fused kernel of site ``name`` under ``kernel`` (rows scored: ``rows``, default ``value``),
        or ``None`` (generic)."""
        if kernel == "generic":
            return None
        return fused_table(fn, value, layout, self.var_ndims[name], masked=self.masked, concrete=self.concrete,
                           compiled=kernel == "compiled", rows=rows)


def tree_marginals(
    layout: PlateLayout,
    tree: GroupNode,
    values: Mapping[str, torch.Tensor],
    guide_fns: Mapping[str, Distribution],
    score: Callable[[str, Distribution, torch.Tensor], torch.Tensor],
    num_variables: Mapping[str, int],
    *,
    prior_fns: Mapping[str, Distribution] | None = None,
    pairwise_memory_mb: float = 1024.0,
    kernel: str = "generic",
    global_batch: bool = False,
    group: "dist.ProcessGroup | None" = None,
) -> TreeMarginals:
    r"""
    Minibatch-stratified estimates of the aggregate posterior at every leaf variable and
    every internal node of ``tree``, for traced sample sites
    (:func:`~pyro_hfvae.ops.mixture_log_marginals` with :func:`stratified_log_weights`).

    Entries of the pairwise tables outside a data-dependent support are :math:`-\infty`
    (:func:`~pyro_hfvae.ops.pairwise_log_prob`).

    :param PlateLayout layout: the data and particle plates (``dataset_size`` set).
    :param GroupNode tree: the group tree over the sites of ``values``.
    :param dict values: site -> sampled value.
    :param dict guide_fns: site -> guide distribution (batched over the data plate).
    :param callable score: ``score(site, fn, value)`` -> per-variable log densities
        (``batch_shape + variable_shape``), e.g. :func:`~pyro_hfvae.distributions.variable_log_prob`.
    :param dict num_variables: site -> its number of variables per data point.
    :param dict prior_fns: site -> prior distribution, for the sites whose prior marginals
        are to be estimated by the uniform batch mixture.
    :param float pairwise_memory_mb: memory budget for the pairwise tables.
    :param str kernel: ``"generic"`` (default): every site gets the generic table of
        :func:`~pyro_hfvae.ops.pairwise_log_prob`; ``"fused"`` or ``"compiled"``: where
        ``score`` is a :class:`VariableScore` and a site's distribution has a fused kernel
        (:func:`~pyro_hfvae.ops.fused_marginals.fused_table`: Normal, Concrete), use it,
        eager (keeps only its inputs for the backward pass; slower on a CPU) or
        :func:`torch.compile`\ d (several times faster once compiled). The values and
        gradients are the same.
    :param bool global_batch: estimate every marginal over the *global* batch of a
        data-parallel run (see below); needs an initialised :mod:`torch.distributed` process group.
    :param group: the process group of the data-parallel ranks (default: the world).
    :rtype: TreeMarginals
    :raises RuntimeError: for ``global_batch=True`` without an initialised process group.

    **Global batch.** With ``global_batch=True`` rank ``r`` holds ``B_r`` of the ``B``
    data points (``layout.batch_size == B_r``, ranks in order) and every marginal is the
    estimate over all ``B`` (the pattern of :mod:`pyro_hfvae.ops.distributed`):

    1. one :func:`~pyro_hfvae.ops.distributed.gather_rows` gathers the samples of every site
       (all sites in one ``all_gather``, autograd-aware; uneven ``B_r`` allowed);
    2. the tables score the ``B`` gathered rows under this rank's ``B_r`` posteriors (its
       components), with :func:`~pyro_hfvae.ops.distributed.global_stratified_log_weights`
       (global ``B``, global indices; the prior mixtures weigh ``1/B``), and reduce them over
       the local components to partial log-sum-exps
       (:func:`~pyro_hfvae.ops.logsumexp.safe_logsumexp`; the fused kernels take the
       ``(R, B_r)`` weights of gathered rows as they are). The chunks of rows under
       ``pairwise_memory_mb`` and their recomputation in the backward pass hold no
       collective: only the local partials are recomputed;
    3. one :func:`~pyro_hfvae.ops.distributed.global_logsumexp` combines the stacked
       ``(P, B, S)`` partials of all variables, nodes and prior mixtures;
    4. this rank keeps its own rows: the results are ``(P, B_r, ...)`` as without ``global_batch``.

    ``layout.dataset_size`` is ``N`` as before (at least ``B``). Every rank must call this
    with the same sites (in the same order, the same shapes but along the data axis), tree,
    ``prior_fns`` sites and gradient mode: the collectives must match (a different number of
    sites or variables is not detected and gives wrong marginals or waits until the process
    group's timeout; :class:`~pyro_hfvae.HFVAELoss` checks it before calling this). Each
    rank's backward pass reaches the collectives too: each rank obtains the gradient of the
    sum over ranks of what depends on the outputs, with respect to its own inputs, so the sum
    of the ranks' gradients is the single-process gradient of the concatenated batch.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro_hfvae.distributions import variable_log_prob
        >>> from pyro_hfvae.poutine.groups import build_group_tree
        >>> def guide():
        ...     with pyro.plate("data", 100, subsample_size=4):
        ...         pyro.sample("z", dist.Normal(torch.zeros(4, 3), 1.0).to_event(1))
        >>> trace = pyro.poutine.trace(guide).get_trace()
        >>> layout = PlateLayout.from_trace(trace)
        >>> site = trace.nodes["z"]
        >>> out = tree_marginals(layout, build_group_tree({"z": None}), {"z": site["value"]}, {"z": site["fn"]},
        ...                      VariableScore({"z": 1}), {"z": 3})
        >>> out.variables["z"].shape, out.nodes[""].shape
        (torch.Size([1, 4, 3]), torch.Size([1, 4]))
        >>> # Identical posteriors: every marginal is the posterior itself.
        >>> torch.allclose(out.nodes[""], site["fn"].log_prob(site["value"])[None])
        True
    """
    check_kernel(kernel)
    prior_fns = {} if prior_fns is None else prior_fns
    some_value = next(iter(values.values()))
    batch_size = layout.batch_size
    batch = None
    row_values, row_layout = values, layout
    if global_batch:
        row_values, batch = _gather_values(layout, values, guide_fns, group)
        row_layout = dataclasses.replace(layout, batch_size=batch.size)
    num_rows = row_layout.batch_size
    size = (layout.num_particles, num_rows, batch_size)
    # Event elements per data point (a Concrete's K classes are one variable but K elements of the tables).
    elements = {name: torch.broadcast_shapes(value.shape, guide_fns[name].batch_shape + guide_fns[name].event_shape)
                .numel() // (layout.num_particles * batch_size) for name, value in values.items()}
    options = {"dtype": some_value.dtype, "pairwise_memory_mb": pairwise_memory_mb,
               "num_elements": {name: max(elements[name], num_variables[name]) for name in values}}

    def tables(fns: Mapping[str, Distribution]) -> dict:
        def table(rows: slice, name: str) -> torch.Tensor:
            def site_score(fn, value):
                return score(name, fn, value)

            return pairwise_log_prob(site_score, fns[name], row_values[name], row_layout, rows,
                                     num_components=batch_size, anchor=values[name])

        out = {}
        for name in fns:
            fused = None
            if isinstance(score, VariableScore):
                fused = score.fused(name, fns[name], values[name], layout, kernel,
                                    rows=row_values[name] if global_batch else None)
            out[name] = (lambda rows, name=name: table(rows, name)) if fused is None else fused
        logger.debug("tree_marginals: fused kernels for %s", [n for n, t in out.items() if isinstance(t, FusedTable)])
        return out

    global_log_weights = None
    if batch is not None:
        # (B, B_r), built and checked once: the chunks (and their recomputation) slice it.
        global_log_weights = global_stratified_log_weights(
            torch.arange(num_rows, device=some_value.device), batch.index(some_value.device), num_rows,
            layout.dataset_size, dtype=some_value.dtype,
        )

    def log_weights(rows: slice) -> torch.Tensor:
        if global_log_weights is not None:
            return global_log_weights[rows]
        return stratified_log_weights(
            rows, batch_size, layout.dataset_size, dtype=some_value.dtype, device=some_value.device
        )

    guide = mixture_log_marginals(
        tables({name: guide_fns[name] for name in values}), size, num_variables, tree, log_weights=log_weights,
        **options,
    )
    prior = LogMarginals({})
    if prior_fns:
        prior = mixture_log_marginals(
            tables(prior_fns), size, num_variables, log_weights=-math.log(num_rows), sites=True, **options,
        )
    parts = [guide.variables, guide.nodes, prior.variables, prior.sites]
    if batch is not None:
        parts = _combine_partials(parts, batch, group)
    return TreeMarginals(*parts)


def _gather_values(
    layout: PlateLayout, values: Mapping[str, torch.Tensor], fns: Mapping[str, Distribution], group
) -> tuple[dict, GlobalBatch]:
    """Every site's samples of the global batch (all sites in one :func:`gather_rows`) and the :class:`GlobalBatch`."""
    flat, shapes = [], {}
    for name, value in values.items():
        value = soft_value(value)  # the relaxed value of a straight-through Concrete: reshaping drops it
        fn = fns[name]
        value = value.expand(torch.broadcast_shapes(value.shape, fn.batch_shape + fn.event_shape))
        axis = value.dim() - len(fn.event_shape) + layout.data_dim
        rows = value.movedim(axis, 0)
        shapes[name] = (axis, rows.shape[1:], value.dtype)
        flat.append(rows.reshape(rows.size(0), -1))
    gathered, batch = gather_rows(torch.cat(flat, 1), 0, group=group)
    out, start = {}, 0
    for name, (axis, shape, dtype) in shapes.items():
        width = shape.numel()
        rows = gathered[:, start : start + width].to(dtype).reshape((batch.size,) + shape)
        out[name] = rows.movedim(0, axis)
        start += width
    logger.debug("tree_marginals: gathered %d rows (%s by rank) of %d elements", batch.size, batch.sizes, start)
    return out, batch


def _combine_partials(parts: list[dict], batch: GlobalBatch, group) -> list[dict]:
    """``parts``' partial log-sum-exps (``(P, B, ...)`` tensors) combined over the ranks, at this rank's rows."""
    entries = [(i, key, value.dim() == 2) for i, part in enumerate(parts) for key, value in part.items()]
    if not entries:
        return parts
    stacked = torch.cat([parts[i][key].unsqueeze(-1) if scalar else parts[i][key] for i, key, scalar in entries], -1)
    combined = global_logsumexp(stacked, group=group)[:, batch.local_rows]
    out: list[dict] = [{} for _ in parts]
    start = 0
    for i, key, scalar in entries:
        width = 1 if scalar else parts[i][key].size(-1)
        piece = combined[..., start : start + width]
        out[i][key] = piece.squeeze(-1) if scalar else piece
        start += width
    return out


def aggregate_log_marginals(
    values: Mapping[str, torch.Tensor],
    posteriors: Mapping[str, Distribution],
    groups: Mapping[str, Sequence[str]] | None = None,
    dataset_size: int | None = None,
    *,
    pairwise_memory_mb: float = 1024.0,
    kernel: str = "generic",
) -> LogMarginals:
    r"""
    Minibatch-stratified log marginals of the aggregate posterior at a batch of samples,
    for the joint, every node of the group tree, every site and every variable, from plain
    tensors and torch distributions (no Pyro program needed).

    Sample ``b`` of every site is scored under the posterior of every data point ``b'``
    (:func:`~pyro_hfvae.ops.pairwise_log_prob`) and the tables are mixed with
    :func:`stratified_log_weights` (uniform ``1/B`` weights when ``dataset_size`` is
    ``None``: the batch is the whole data set). As in :class:`~pyro_hfvae.HFVAELoss`, a
    site whose distribution is ``Independent`` over scalar events has one variable per
    event element, a multivariate event (Concrete, Dirichlet, MultivariateNormal) is one
    variable, and batch dims after the first are variables too. Entries outside a
    data-dependent support (``Uniform(x - 1, x + 1)``) have density 0.

    With these, per sample, the index-code mutual information is
    ``log_q - out.joint`` (``log_q`` the posterior's own log density) and the total
    correlations are :meth:`LogMarginals.tc_terms <pyro_hfvae.ops.LogMarginals.tc_terms>`.

    :param dict values: site -> sample, of shape ``batch_shape + event_shape`` of its posterior.
    :param dict posteriors: site -> distribution with ``batch_shape == (B, ...)``, one per data point.
    :param dict groups: group path -> list of sites (``"/"`` nests groups); a site in no
        group is a group of its own (the default for every site).
    :param int dataset_size: ``N``, the size of the data set the batch was drawn from
        (``None``: uniform weights over the batch).
    :param float pairwise_memory_mb: memory budget for the ``B x B`` pairwise tables.
    :param str kernel: ``"generic"`` (default), ``"fused"`` or ``"compiled"``, as in :func:`tree_marginals`.
    :returns: ``variables`` (site -> ``(B, V)``), ``sites`` (site -> ``(B,)``), ``nodes``
        (group path -> ``(B,)``, the root ``""`` being ``joint``).
    :rtype: ~pyro_hfvae.ops.LogMarginals

    Example::

        >>> import torch
        >>> from torch.distributions import Independent, Normal
        >>> loc = torch.tensor([[0.0, 0.0], [0.0, 9.0], [9.0, 0.0], [9.0, 9.0]])
        >>> q = Independent(Normal(loc, 0.1), 1)
        >>> z = q.sample()
        >>> out = aggregate_log_marginals({"z": z}, {"z": q})
        >>> round(float((q.log_prob(z) - out.joint).mean()), 3)   # I(x; z) = log 4: the points are apart
        1.386
        >>> bool(out.tc_terms()["tc_within/z"].abs().max() < 1e-3)   # a 2 x 2 grid: independent coordinates
        True
    """
    check_kernel(kernel)
    if not values or list(values) != list(posteriors):
        raise ValueError(
            f"expected values and posteriors for the same non-empty sites, in the same order, but got "
            f"{list(values)} and {list(posteriors)}"
        )
    batch_size = None
    layouts, num_variables, num_elements, var_ndims, samples = {}, {}, {}, {}, {}
    for name, fn in posteriors.items():
        if not isinstance(fn, Distribution) or not fn.batch_shape:
            raise ValueError(
                f"expected posteriors[{name!r}] to be a Distribution with batch_shape (B, ...) but got "
                f"{getattr(fn, 'batch_shape', type(fn).__name__)}; one distribution per data point, e.g. "
                "Normal(loc, scale).to_event(1)"
            )
        batch_size = fn.batch_shape[0] if batch_size is None else batch_size
        value = soft_value(values[name])
        if fn.batch_shape[0] != batch_size or value.shape != fn.batch_shape + fn.event_shape:
            raise ValueError(
                f"expected values[{name!r}] of shape batch_shape + event_shape = "
                f"{tuple(fn.batch_shape[:1])} + {tuple(fn.batch_shape[1:] + fn.event_shape)} "
                f"(batch of {batch_size}) but got {tuple(value.shape)} and batch_shape {tuple(fn.batch_shape)}"
            )
        samples[name] = value
        var_ndims[name] = variable_ndim(fn)
        layouts[name] = PlateLayout("data", -len(fn.batch_shape), batch_size, dataset_size, None, 1)
        num_variables[name] = fn.batch_shape[1:].numel() * fn.event_shape[: var_ndims[name]].numel()
        num_elements[name] = fn.batch_shape[1:].numel() * fn.event_shape.numel()
    some = next(iter(samples.values()))
    if dataset_size is None:
        log_weights = -math.log(batch_size)
    else:
        _stratified_log_weight_values(batch_size, dataset_size)  # checks B and N before any table

        def log_weights(rows: slice) -> torch.Tensor:
            return stratified_log_weights(rows, batch_size, dataset_size, dtype=some.dtype, device=some.device)

    def table(rows: slice, name: str) -> torch.Tensor:
        def site_score(fn, value):
            return variable_log_prob(fn, value, var_ndims[name])

        return pairwise_log_prob(site_score, posteriors[name], samples[name], layouts[name], rows,
                                 anchor=samples[name])

    score = VariableScore(var_ndims)
    tables = {}
    for name in posteriors:
        fused = score.fused(name, posteriors[name], samples[name], layouts[name], kernel)
        tables[name] = (lambda rows, name=name: table(rows, name)) if fused is None else fused
    out = mixture_log_marginals(
        tables,
        (1, batch_size, batch_size),
        num_variables,
        groups_to_tree(list(posteriors), groups),
        log_weights=log_weights,
        sites=True,
        num_elements=num_elements,
        dtype=some.dtype,
        pairwise_memory_mb=pairwise_memory_mb,
    )
    return LogMarginals(
        {k: v[0] for k, v in out.variables.items()},
        {k: v[0] for k, v in out.nodes.items()},
        {k: v[0] for k, v in out.sites.items()},
        out.tree,
    )
