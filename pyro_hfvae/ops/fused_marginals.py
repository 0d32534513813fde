# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
r"""
Fused pairwise marginals of Normal posteriors: the per-variable log marginals and the
per-site pairwise table, with an analytic backward pass that recomputes the table instead of
keeping it.

For a chunk of rows ``r`` (data points whose samples are scored) against all ``B`` data
points ``b`` of the batch, with per-variable Normal posteriors,

.. math::

    t_{rbv} = \log \mathcal N(z_{rv} \mid \mu_{bv}, \sigma_{bv}), \qquad
    \ell_{rv} = \log \sum_b W_{rb}\, e^{t_{rbv}}, \qquad s_{rb} = \sum_v t_{rbv}.

The generic path builds :math:`t` through ``Distribution.log_prob`` and lets autograd keep
every temporary of the ``(P, R, B, V)`` computation for the backward pass. Here the forward
pass keeps only its inputs and :math:`\ell`, and the backward pass rebuilds :math:`t` once:

.. math::

    \frac{\partial \mathcal L}{\partial t_{rbv}} = g^{\ell}_{rv}\, e^{t_{rbv} + \log W_{rb} - \ell_{rv}}
    + g^{s}_{rb}, \qquad
    \frac{\partial t}{\partial z} = -\frac{z - \mu}{\sigma^2},\quad
    \frac{\partial t}{\partial \mu} = \frac{z - \mu}{\sigma^2},\quad
    \frac{\partial t}{\partial \sigma} = \frac{(z - \mu)^2 - \sigma^2}{\sigma^3}.

With ``compiled=True`` both passes run as :func:`torch.compile` kernels (C++/OpenMP on a
CPU, Triton on a GPU), which fuse the element-wise work into one loop over the table; the
first call per shape pays the compilation (tens of seconds on a CPU).
"""
import math

import torch

__all__ = [
    "normal_pairwise_marginals",
]

_HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def _table(value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # (P, R, 1, V) against (P, 1, B, V) -> (P, R, B, V)
    standard = (value.unsqueeze(2) - loc.unsqueeze(1)) / scale.unsqueeze(1)
    return -0.5 * standard.square() - scale.log().unsqueeze(1) - _HALF_LOG_TWO_PI


def _forward(value, loc, scale, log_weights):
    table = _table(value, loc, scale)
    variables = torch.logsumexp(table + log_weights[..., None], dim=2)
    return variables, table.sum(-1)


def _backward(value, loc, scale, log_weights, variables, grad_variables, grad_site):
    table = _table(value, loc, scale)
    grad_table = grad_variables.unsqueeze(2) * torch.exp(table + log_weights[..., None] - variables.unsqueeze(2))
    grad_table = grad_table + grad_site.unsqueeze(-1)
    precision = scale.reciprocal().square().unsqueeze(1)
    residual = value.unsqueeze(2) - loc.unsqueeze(1)
    weighted = grad_table * residual * precision  # dL/dmu per (r, b, v)
    grad_value = -weighted.sum(2)
    grad_loc = weighted.sum(1)
    grad_scale = (grad_table * (residual.square() * precision - 1)).sum(1) / scale
    return grad_value, grad_loc, grad_scale


_COMPILED: dict = {}


def _kernel(name: str, compiled: bool):
    function = {"forward": _forward, "backward": _backward}[name]
    if not compiled:
        return function
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(function, dynamic=False, fullgraph=True)
    return _COMPILED[name]


class _NormalPairwiseMarginals(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, loc, scale, log_weights, compiled):
        variables, site = _kernel("forward", compiled)(value, loc, scale, log_weights)
        ctx.save_for_backward(value, loc, scale, log_weights, variables)
        ctx.compiled = compiled
        return variables, site

    @staticmethod
    def backward(ctx, grad_variables, grad_site):
        value, loc, scale, log_weights, variables = ctx.saved_tensors
        if grad_variables is None:
            grad_variables = torch.zeros_like(variables)
        if grad_site is None:
            grad_site = value.new_zeros(value.shape[:2] + loc.shape[1:2])
        grads = _kernel("backward", ctx.compiled)(value, loc, scale, log_weights, variables,
                                                  grad_variables.contiguous(), grad_site.contiguous())
        return (*grads, None, None)


def normal_pairwise_marginals(
    value: torch.Tensor,
    loc: torch.Tensor,
    scale: torch.Tensor,
    log_weights: torch.Tensor,
    *,
    compiled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    Per-variable log marginals :math:`\ell_{rv}` and the per-site pairwise table
    :math:`s_{rb}` of Normal posteriors (see the module docstring), with exact gradients
    with respect to ``value``, ``loc`` and ``scale``.

    :param torch.Tensor value: ``(P, R, V)`` samples of the ``R`` rows scored.
    :param torch.Tensor loc: ``(P, B, V)`` posterior means of the ``B`` mixture components.
    :param torch.Tensor scale: ``(P, B, V)`` posterior standard deviations (positive).
    :param torch.Tensor log_weights: ``(R, B)`` log mixture weights (no gradient).
    :param bool compiled: run both passes as :func:`torch.compile` kernels.
    :returns: ``(variables, site)``: ``(P, R, V)`` and ``(P, R, B)``.
    :rtype: tuple

    Example::

        >>> value, loc, scale = torch.randn(1, 3, 2), torch.randn(1, 3, 2), torch.ones(1, 3, 2)
        >>> log_weights = torch.full((3, 3), -math.log(3))
        >>> variables, site = normal_pairwise_marginals(value, loc, scale, log_weights)
        >>> table = torch.distributions.Normal(loc[:, None], scale[:, None]).log_prob(value[:, :, None])
        >>> torch.allclose(variables, torch.logsumexp(table + log_weights[..., None], 2))
        True
        >>> torch.allclose(site, table.sum(-1))
        True
    """
    if (value.dim(), loc.dim(), scale.dim()) != (3, 3, 3) or loc.shape[1:] != scale.shape[1:] \
            or value.shape[-1] != loc.shape[-1]:
        raise ValueError(f"expected value (P, R, V) and loc, scale (P, B, V) but got shapes {tuple(value.shape)}, "
                         f"{tuple(loc.shape)}, {tuple(scale.shape)}")
    if log_weights.shape != (value.shape[1], loc.shape[1]):
        raise ValueError(f"expected log_weights of shape {(value.shape[1], loc.shape[1])} but got "
                         f"{tuple(log_weights.shape)}")
    particles = max(value.shape[0], loc.shape[0])
    value, loc, scale = (t.expand(particles, -1, -1) for t in (value, loc, scale))
    return _NormalPairwiseMarginals.apply(value.contiguous(), loc.contiguous(), scale.contiguous(),
                                          log_weights.detach().contiguous(), compiled)
