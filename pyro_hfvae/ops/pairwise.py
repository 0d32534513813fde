# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
r"""
The pairwise trick: every sample scored under every data point's distribution.

For a site whose data axis (the data plate's dim) is ``d``, the value's rows are moved in
front of all batch dims, leaving a singleton at ``d``, so that the distribution's
``log_prob`` broadcasts to a table ``[b, ..., b', ...] = log q(z_b | params of b')``.

**Data-dependent supports.** Where a distribution's support depends on its parameters
(``Uniform(x - 1, x + 1)``), a sample of one data point can lie outside another's support;
torch's argument validation would then raise. Such entries are given log density
:math:`-\infty` instead: each out-of-support value is swapped for an *anchor* inside that
component's support (its own sample) before scoring, with validation left on, and the
entry is then set to :math:`-\infty` with :func:`torch.where`, so no NaN reaches the
gradients.
"""

import logging
from typing import Callable

import torch
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution
from torch.distributions import Distribution, Independent, constraints

from pyro_hfvae.poutine.plate_layout import PlateLayout

logger = logging.getLogger(__name__)

__all__ = [
    "pairwise_log_prob",
]


def _innermost(fn: Distribution) -> Distribution:
    """The distribution whose ``log_prob`` is evaluated elementwise under the wrappers."""
    while isinstance(fn, (Independent, ExpandedDistribution, MaskedDistribution)):
        fn = fn.base_dist
    return fn


def _bounded_support(fn: Distribution) -> constraints.Constraint | None:
    """``fn``'s innermost support where it depends on parameters (holds tensors), else None."""
    try:
        support = fn.support
    except NotImplementedError:
        return None
    base = support
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    return support if any(isinstance(v, torch.Tensor) for v in vars(base).values()) else None


def _restrict_to_support(
    score: Callable[[Distribution, torch.Tensor], torch.Tensor],
    fn: Distribution,
    pair: torch.Tensor,
    anchor: torch.Tensor,
    batch_ndim: int,
) -> torch.Tensor:
    """``score(fn, pair)`` with out-of-support entries at -inf (see the module docstring)."""
    inner = _innermost(fn)
    support = _bounded_support(inner)
    if support is None:
        return score(fn, pair)
    # [b, ..., b', ..., dims of fn's event that are inner batch dims]
    inside = support.check(pair)
    event_ndim = len(inner.event_shape)
    inside_event = inside.reshape(inside.shape + (1,) * event_ndim)
    table = score(fn, torch.where(inside_event, pair, anchor.unsqueeze(0)))
    # Reduce to the variables: dims of the table past the (1 + batch_ndim) batch dims.
    var_ndim = table.dim() - 1 - batch_ndim
    inner_ndim = inside.dim() - 1 - batch_ndim  # fn's event dims that are inner batch dims
    if inner_ndim > var_ndim:
        inside = inside.flatten(1 + batch_ndim + var_ndim).all(-1)
    inside = inside.reshape(inside.shape + (1,) * (var_ndim - min(inner_ndim, var_ndim)))
    return torch.where(inside, table, torch.tensor(-torch.inf, dtype=table.dtype, device=table.device))


def pairwise_log_prob(
    score: Callable[[Distribution, torch.Tensor], torch.Tensor],
    fn: Distribution,
    value: torch.Tensor,
    layout: PlateLayout,
    rows: slice,
    *,
    num_components: int | None = None,
    anchor: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    The table ``[p, b, b', v] = score(fn at (p, b'), value at (p, b))[v]`` for ``b`` in ``rows``.

    :param callable score: ``score(fn, value)`` returning per-variable log densities of
        shape ``batch_shape + variable_shape`` (e.g.
        :func:`~pyro_hfvae.distributions.variable_log_prob`).
    :param ~torch.distributions.Distribution fn: the components' distribution, batched
        over the data axis.
    :param torch.Tensor value: the samples, ``layout.batch_size`` of them along the data axis.
    :param PlateLayout layout: where the particle and data plates are.
    :param slice rows: which samples ``b`` to score.
    :param int num_components: the number of components ``b'`` (default: ``layout.batch_size``,
        the samples' own data points).
    :param torch.Tensor anchor: one value inside each component's support, shaped like
        ``value`` with ``num_components`` along the data axis (the components' own samples).
        Needed where the support depends on the parameters: entries outside it are then
        :math:`-\\infty`.
    :returns: a ``(P, len(rows), M, V)`` tensor (``M`` components, ``V`` = number of
        variables, nested plates included).

    Example::

        >>> import torch
        >>> from torch.distributions import Uniform
        >>> layout = PlateLayout("data", -1, 2, None, None, 1)
        >>> fn, value = Uniform(torch.tensor([0.0, 5.0]), torch.tensor([2.0, 7.0])), torch.tensor([1.0, 6.0])
        >>> pairwise_log_prob(lambda f, v: f.log_prob(v)[..., None], fn, value, layout, slice(0, 2),
        ...                   anchor=value)[0, ..., 0]
        tensor([[-0.6931,    -inf],
                [   -inf, -0.6931]])
    """
    batch_ndim = value.dim() - len(fn.event_shape)
    data_axis = batch_ndim + layout.data_dim
    start, stop, _ = rows.indices(layout.batch_size)
    value_rows = value.narrow(data_axis, start, stop - start) if value.size(data_axis) > 1 else value
    # [b, ..., 1 (data axis), ..., event]: log_prob broadcasts b against fn's b'.
    pair = value_rows.unsqueeze(0).transpose(0, data_axis + 1)
    if anchor is None:
        table = score(fn, pair)
    else:
        table = _restrict_to_support(score, fn, pair, anchor, batch_ndim)
    table = layout.front(table, batch_ndim, lead=1)  # (P, B', b, rest...)
    table = table.transpose(1, 2)
    num_components = layout.batch_size if num_components is None else num_components
    table = table.expand((layout.num_particles, stop - start, num_components) + table.shape[3:])
    return table.reshape(layout.num_particles, stop - start, num_components, -1)
