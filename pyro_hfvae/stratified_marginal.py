# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
r"""
Minibatch-stratified estimates of aggregate-posterior marginals.

For a batch of ``B`` data points drawn from a data set of ``N``, the aggregate
posterior :math:`q(v) = \frac{1}{N}\sum_n q(v \mid x_n)` of any set of variables ``v``
is estimated at the sample :math:`v_b` drawn for data point ``b`` by

.. math::

    \log \hat q(v_b) = \log \sum_{b'} W_{bb'}\, q(v_b \mid x_{b'}),\qquad
    W_{bb} = \frac{1}{N},\quad W_{bb'} = \frac{N-1}{N(B-1)}\ (b' \ne b),

whose rows sum to one (``N == B`` gives uniform weights ``1/B``).

The ``(b, b')`` table is built with the *pairwise trick*: the value's batch axis
is moved in front of all batch dims, leaving a singleton in its place, so that the
distribution's ``log_prob`` broadcasts to ``[b, ..., b', ...]``.

References

[1] Structured Disentangled Representations,
    Babak Esmaeili, Hao Wu, Sarthak Jain, et al. (AISTATS 2019)
[2] Isolating Sources of Disentanglement in Variational Autoencoders,
    Ricky T. Q. Chen, Xuechen Li, Roger Grosse, David Duvenaud (NeurIPS 2018)
"""

import math
from typing import Callable

import torch
from torch.distributions import Distribution

from pyro_hfvae.plate_layout import PlateLayout

__all__ = [
    "pairwise_log_prob",
    "stratified_log_weights",
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
    if batch_size < 2 or dataset_size < batch_size:
        raise ValueError(f"expected 2 <= batch_size <= dataset_size but got B={batch_size}, N={dataset_size}")
    start, stop, _ = rows.indices(batch_size)
    log_diag = -math.log(dataset_size)
    log_off = math.log(dataset_size - 1) - math.log(dataset_size) - math.log(batch_size - 1)
    weights = torch.full((stop - start, batch_size), log_off, dtype=dtype, device=device)
    index = torch.arange(stop - start, device=device)
    weights[index, index + start] = log_diag
    return weights


def pairwise_log_prob(
    score: Callable[[Distribution, torch.Tensor], torch.Tensor],
    fn: Distribution,
    value: torch.Tensor,
    layout: PlateLayout,
    rows: slice,
) -> torch.Tensor:
    """
    The table ``[p, b, b', v] = score(fn at (p, b'), value at (p, b))[v]`` for ``b`` in ``rows``.

    :param callable score: ``score(fn, value)`` returning per-variable log densities of
        shape ``batch_shape + variable_shape`` (e.g. :func:`~pyro_hfvae.variable_log_prob`).
    :param ~torch.distributions.Distribution fn: the site's distribution (batch over the data plate).
    :param torch.Tensor value: the site's value.
    :param PlateLayout layout: where the particle and data plates are.
    :param slice rows: which data points ``b`` to score.
    :returns: a ``(P, len(rows), B, V)`` tensor (``V`` = number of variables, nested plates included).
    """
    batch_ndim = value.dim() - len(fn.event_shape)
    data_axis = batch_ndim + layout.data_dim
    start, stop, _ = rows.indices(layout.batch_size)
    value_rows = value.narrow(data_axis, start, stop - start) if value.size(data_axis) > 1 else value
    # [b, ..., 1 (data axis), ..., event]: log_prob broadcasts b against fn's b'.
    pair = value_rows.unsqueeze(0).transpose(0, data_axis + 1)
    table = score(fn, pair)
    table = layout.front(table, batch_ndim, lead=1)  # (P, B', b, rest...)
    table = table.transpose(1, 2)
    num_particles = layout.num_particles
    table = table.expand((num_particles, stop - start, layout.batch_size) + table.shape[3:])
    return table.reshape(num_particles, stop - start, layout.batch_size, -1)
