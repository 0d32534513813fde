# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
r"""
Fused pairwise marginals of Normal and Concrete posteriors: the per-variable log marginals
and the per-site pairwise table, with an analytic backward pass that recomputes the table
instead of keeping it, and the dispatch that routes a site of the aggregate-posterior engine
(:func:`~pyro_hfvae.ops.mixture_log_marginals`) to them.

For a chunk of rows ``r`` (data points whose samples are scored) against all ``B`` data
points ``b`` of the batch, with per-variable posteriors :math:`q_{bv}`,

.. math::

    t_{rbv} = \log q_{bv}(z_{rv}), \qquad
    \ell_{rv} = \log \sum_b W_{rb}\, e^{t_{rbv}}, \qquad s_{rb} = \sum_v t_{rbv}.

The generic path builds :math:`t` through ``Distribution.log_prob`` and lets autograd keep
every temporary of the ``(P, R, B, V)`` computation for the backward pass. Here the forward
pass keeps only its inputs and :math:`\ell`, and the backward pass rebuilds :math:`t` once,
with

.. math::

    \frac{\partial \mathcal L}{\partial t_{rbv}} = g^{\ell}_{rv}\, e^{t_{rbv} + \log W_{rb} - \ell_{rv}}
    + g^{s}_{rb}.

**Normal** (:func:`normal_pairwise_marginals`):
:math:`t = -\tfrac12 (z - \mu)^2/\sigma^2 - \log \sigma - \tfrac12 \log 2\pi` and

.. math::

    \frac{\partial t}{\partial z} = -\frac{z - \mu}{\sigma^2},\quad
    \frac{\partial t}{\partial \mu} = \frac{z - \mu}{\sigma^2},\quad
    \frac{\partial t}{\partial \sigma} = \frac{(z - \mu)^2 - \sigma^2}{\sigma^3}.

**Concrete** (:func:`concrete_pairwise_marginals`, the log-space density of
:func:`~pyro_hfvae.distributions.util.concrete_log_prob`, clamping included): with
:math:`y = \log \max(x, \epsilon)`, :math:`u_k = \lambda_{bk} - \tau_b y_{rk}` (normalised
logits :math:`\lambda`, temperature :math:`\tau`, ``K`` classes) and :math:`s = \mathrm{softmax}(u)`,

.. math::

    t = \sum_k u_k - K \log \sum_k e^{u_k} + \log \Gamma(K) + (K - 1) \log \tau_b - \sum_k y_{rk},

    \frac{\partial t}{\partial \lambda_{bk}} = 1 - K s_k,\quad
    \frac{\partial t}{\partial y_{rk}} = -\tau_b (1 - K s_k) - 1,\quad
    \frac{\partial t}{\partial \tau_b} = -\sum_k y_{rk} (1 - K s_k) + \frac{K - 1}{\tau_b},

and :math:`\partial y / \partial x = 1/x` where :math:`x \ge \epsilon`, else 0 (as
:func:`torch.clamp`'s gradient).

With ``compiled=True`` both passes run as :func:`torch.compile` kernels (C++/OpenMP on a
CPU, Triton on a GPU), which fuse the element-wise work into one loop over the table. The
first call per shape pays the compilation (tens of seconds on a CPU); a second shape (the
last, smaller chunk of rows, another batch size) compiles once more, a kernel with dynamic
sizes that then serves every further shape. Where compilation fails (no C++ compiler, an
unsupported backend) a :class:`RuntimeWarning` says so once and the eager kernels, which
give the same values, are used from then on.
"""

import dataclasses
import functools
import logging
import math
import warnings
from typing import Callable, NamedTuple

import torch
from torch.distributions import Distribution, Normal, RelaxedOneHotCategorical
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from pyro_hfvae.distributions.util import _unwrap, distribution_mask, soft_value
from pyro_hfvae.ops.logsumexp import floored_exp, safe_logsumexp
from pyro_hfvae.poutine.plate_layout import PlateLayout

logger = logging.getLogger(__name__)

__all__ = [
    "KERNELS",
    "FusedTable",
    "check_kernel",
    "concrete_pairwise_marginals",
    "fused_table",
    "normal_pairwise_marginals",
]

#: How :func:`~pyro_hfvae.ops.tree_marginals` and :class:`~pyro_hfvae.HFVAELoss` build pairwise
#: tables: ``"generic"`` (the default: ``Distribution.log_prob``, autograd), ``"fused"`` (the eager fused
#: kernels of this module where one applies), ``"compiled"`` (the same, :func:`torch.compile`\ d).
KERNELS = ("generic", "fused", "compiled")

_HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def check_kernel(kernel: str) -> str:
    """
    ``kernel`` if it is one of :data:`KERNELS`.

    :raises ValueError: for anything else.
    """
    if kernel not in KERNELS:
        raise ValueError(f"expected kernel in {KERNELS} but got {kernel!r}; 'generic' is the default, "
                         "'fused' keeps less memory, 'compiled' is fast after a one-off compilation")
    return kernel


def _grad_table(table, log_weights, variables, grad_variables, grad_site):
    # dL/dt (P, R, B, V) from the gradients of the two outputs.
    weights = floored_exp(table + log_weights[..., None] - variables.unsqueeze(2))
    return grad_variables.unsqueeze(2) * weights + grad_site.unsqueeze(-1)


# Normal ---------------------------------------------------------------------------------------


def _normal_table(value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # (P, R, 1, V) against (P, 1, B, V) -> (P, R, B, V)
    standard = (value.unsqueeze(2) - loc.unsqueeze(1)) / scale.unsqueeze(1)
    return -0.5 * standard.square() - scale.log().unsqueeze(1) - _HALF_LOG_TWO_PI


def _normal_forward(value, loc, scale, log_weights):
    table = _normal_table(value, loc, scale)
    variables = safe_logsumexp(table + log_weights[..., None], 2)
    return variables, table.sum(-1)


def _normal_backward(value, loc, scale, log_weights, variables, grad_variables, grad_site):
    table = _normal_table(value, loc, scale)
    grad_table = _grad_table(table, log_weights, variables, grad_variables, grad_site)
    precision = scale.reciprocal().square().unsqueeze(1)
    residual = value.unsqueeze(2) - loc.unsqueeze(1)
    weighted = grad_table * residual * precision  # dL/dmu per (r, b, v)
    grad_value = -weighted.sum(2)
    grad_loc = weighted.sum(1)
    grad_scale = (grad_table * (residual.square() * precision - 1)).sum(1) / scale
    return grad_value, grad_loc, grad_scale


# Concrete -------------------------------------------------------------------------------------


def _concrete_scores(log_value, logits, temperature):
    # u = logits_b - temperature_b * log x_r: (P, R, B, V, K)
    return logits.unsqueeze(1) - temperature[:, None, :, :, None] * log_value.unsqueeze(2)


def _concrete_table(log_value, logits, temperature, scores, log_normaliser, log_space: bool):
    num_classes = logits.shape[-1]
    log_scale = math.lgamma(num_classes) + (num_classes - 1) * temperature.log()  # (P, B, V)
    table = scores.sum(-1) - num_classes * log_normaliser + log_scale.unsqueeze(1)
    if log_space:  # the ExpConcrete density of log x
        return table
    return table - log_value.sum(-1).unsqueeze(2)  # times the Jacobian of x -> log x


def _concrete_log_value(value, floor: float, log_space: bool):
    return value if log_space else value.clamp(min=floor).log()


def _concrete_forward(value, logits, temperature, log_weights, floor: float, log_space: bool):
    log_value = _concrete_log_value(value, floor, log_space)
    scores = _concrete_scores(log_value, logits, temperature)
    table = _concrete_table(log_value, logits, temperature, scores, safe_logsumexp(scores, -1), log_space)
    variables = safe_logsumexp(table + log_weights[..., None], 2)
    return variables, table.sum(-1)


def _concrete_backward(value, logits, temperature, log_weights, variables, grad_variables, grad_site, floor: float,
                       log_space: bool):
    num_classes = logits.shape[-1]
    log_value = _concrete_log_value(value, floor, log_space)
    scores = _concrete_scores(log_value, logits, temperature)
    log_normaliser = safe_logsumexp(scores, -1)
    table = _concrete_table(log_value, logits, temperature, scores, log_normaliser, log_space)
    grad_table = _grad_table(table, log_weights, variables, grad_variables, grad_site)  # (P, R, B, V)
    softmax = floored_exp(scores - log_normaliser.unsqueeze(-1))
    weighted = grad_table.unsqueeze(-1) * softmax  # G * s: (P, R, B, V, K)
    grad_over_rows = grad_table.sum(1)  # (P, B, V)
    grad_logits = grad_over_rows.unsqueeze(-1) - num_classes * weighted.sum(1)
    grad_temperature = (
        -(grad_table * log_value.sum(-1).unsqueeze(2)).sum(1)
        + num_classes * (weighted * log_value.unsqueeze(2)).sum((1, 4))
        + (num_classes - 1) * grad_over_rows / temperature
    )
    tempered = grad_table * temperature.unsqueeze(1)  # G * tau_b
    grad_log_value = (num_classes * (weighted * temperature[:, None, :, :, None]).sum(2)
                      - (tempered if log_space else tempered + grad_table).sum(2).unsqueeze(-1))
    if log_space:
        return grad_log_value, grad_logits, grad_temperature
    grad_value = torch.where(value >= floor, grad_log_value / value.clamp(min=floor), 0.0)
    return grad_value, grad_logits, grad_temperature


# Compilation with a warned fallback -----------------------------------------------------------

_EAGER = {
    "normal_forward": _normal_forward,
    "normal_backward": _normal_backward,
    "concrete_forward": _concrete_forward,
    "concrete_backward": _concrete_backward,
}
_COMPILED: dict = {}
_compile_error: list = []  # the first compilation error, once compilation has failed


def _compile(function):
    # dynamic=None: the first shape is compiled static, a second one recompiles with dynamic sizes.
    return torch.compile(function, dynamic=None, fullgraph=True)


def _run(name: str, compiled: bool, *args):
    eager = _EAGER[name]
    if not compiled or _compile_error:
        return eager(*args)
    # Dynamo's first use turns off torch.distributions' argument validation process-wide
    # (TorchPatcher.patch); keep the user's setting.
    validate = Distribution._validate_args
    try:
        if name not in _COMPILED:
            _COMPILED[name] = _compile(eager)
        return _COMPILED[name](*args)
    except Exception as error:  # torch.compile raises many types (BackendCompilerFailed, InductorError, ...)
        out = eager(*args)  # an error of the inputs raises here, as without compilation
        _compile_error.append(error)
        message = str(error).strip().splitlines()
        warnings.warn(
            f"torch.compile of the fused pairwise kernels failed ({type(error).__name__}: "
            f"{message[0] if message else ''}); using the eager fused kernels from now on: the same values, "
            "slower. Install a C++ compiler (CPU) or Triton (GPU), or use HFVAELoss(kernel='fused')",
            RuntimeWarning,
            stacklevel=2,
        )
        logger.debug("torch.compile failure", exc_info=error)
        return out
    finally:
        Distribution.set_default_validate_args(validate)


def _incoming_grads(value: torch.Tensor, variables: torch.Tensor, batch: int, grad_variables: torch.Tensor | None,
                    grad_site: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of both outputs for a backward kernel: zeros for an unused output, contiguous."""
    if grad_variables is None:
        grad_variables = torch.zeros_like(variables)
    if grad_site is None:
        grad_site = value.new_zeros(value.shape[:2] + (batch,))
    return grad_variables.contiguous(), grad_site.contiguous()


class _NormalPairwiseMarginals(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, loc, scale, log_weights, compiled):
        variables, site = _run("normal_forward", compiled, value, loc, scale, log_weights)
        ctx.save_for_backward(value, loc, scale, log_weights, variables)
        ctx.compiled = compiled
        return variables, site

    @staticmethod
    def backward(ctx, grad_variables, grad_site):
        value, loc, scale, log_weights, variables = ctx.saved_tensors
        grads = _run("normal_backward", ctx.compiled, value, loc, scale, log_weights, variables,
                     *_incoming_grads(value, variables, loc.shape[1], grad_variables, grad_site))
        return (*grads, None, None)


class _ConcretePairwiseMarginals(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, logits, temperature, log_weights, compiled, log_space):
        floor = torch.finfo(value.dtype).tiny ** 0.5
        variables, site = _run("concrete_forward", compiled, value, logits, temperature, log_weights, floor,
                               log_space)
        ctx.save_for_backward(value, logits, temperature, log_weights, variables)
        ctx.compiled, ctx.floor, ctx.log_space = compiled, floor, log_space
        return variables, site

    @staticmethod
    def backward(ctx, grad_variables, grad_site):
        value, logits, temperature, log_weights, variables = ctx.saved_tensors
        grads = _run("concrete_backward", ctx.compiled, value, logits, temperature, log_weights, variables,
                     *_incoming_grads(value, variables, logits.shape[1], grad_variables, grad_site), ctx.floor,
                     ctx.log_space)
        return (*grads, None, None, None)


def _check_weights(log_weights: torch.Tensor, rows: int, batch: int) -> None:
    if log_weights.shape != (rows, batch):
        raise ValueError(f"expected log_weights of shape {(rows, batch)} but got {tuple(log_weights.shape)}")


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
    _check_weights(log_weights, value.shape[1], loc.shape[1])
    particles = max(value.shape[0], loc.shape[0], scale.shape[0])
    value, loc, scale = (t.expand(particles, -1, -1) for t in (value, loc, scale))
    return _NormalPairwiseMarginals.apply(value.contiguous(), loc.contiguous(), scale.contiguous(),
                                          log_weights.detach().contiguous(), compiled)


def concrete_pairwise_marginals(
    value: torch.Tensor,
    logits: torch.Tensor,
    temperature: torch.Tensor,
    log_weights: torch.Tensor,
    *,
    compiled: bool = False,
    log_space: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    Per-variable log marginals :math:`\ell_{rv}` and the per-site pairwise table
    :math:`s_{rb}` of Concrete (``RelaxedOneHotCategorical``) posteriors scored by their
    relaxed density in log space (see the module docstring; equal to
    :func:`~pyro_hfvae.distributions.util.concrete_log_prob`, clamping included), or with
    ``log_space=True`` of ExpConcrete (``ExpRelaxedCategorical``) posteriors, the
    distribution of the Concrete's logarithm, scored at the logarithms themselves (the same
    table without the Jacobian term :math:`-\sum_k y_{rk}`, and nothing clamped), with exact
    gradients with respect to ``value``, ``logits`` and ``temperature``.

    :param torch.Tensor value: ``(P, R, V, K)`` points of the simplex, or their logarithms
        with ``log_space=True`` (the ``R`` rows scored).
    :param torch.Tensor logits: ``(P, B, V, K)`` normalised logits (``fn.logits``) of the
        ``B`` mixture components.
    :param torch.Tensor temperature: ``(P, B, V)`` temperatures (positive).
    :param torch.Tensor log_weights: ``(R, B)`` log mixture weights (no gradient).
    :param bool compiled: run both passes as :func:`torch.compile` kernels.
    :param bool log_space: score ExpConcrete posteriors at log values.
    :returns: ``(variables, site)``: ``(P, R, V)`` and ``(P, R, B)``.
    :rtype: tuple

    Example::

        >>> from pyro_hfvae.distributions.util import concrete_log_prob
        >>> from torch.distributions import RelaxedOneHotCategorical
        >>> logits = torch.randn(1, 3, 1, 4).log_softmax(-1)
        >>> temperature = torch.full((1, 3, 1), 0.5)
        >>> fn = RelaxedOneHotCategorical(temperature[..., None], logits=logits)
        >>> value = fn.sample()
        >>> variables, site = concrete_pairwise_marginals(value, logits, temperature, torch.zeros(3, 3))
        >>> table = concrete_log_prob(fn, value.transpose(0, 1))   # [r, b, v]
        >>> torch.allclose(site[0], table.sum(-1), atol=1e-5)
        True
    """
    if (value.dim(), logits.dim(), temperature.dim()) != (4, 4, 3) or logits.shape[1:3] != temperature.shape[1:] \
            or value.shape[2:] != logits.shape[2:]:
        raise ValueError(f"expected value (P, R, V, K), logits (P, B, V, K) and temperature (P, B, V) but got "
                         f"shapes {tuple(value.shape)}, {tuple(logits.shape)}, {tuple(temperature.shape)}")
    _check_weights(log_weights, value.shape[1], logits.shape[1])
    particles = max(value.shape[0], logits.shape[0], temperature.shape[0])
    value, logits = (t.expand(particles, -1, -1, -1) for t in (value, logits))
    temperature = temperature.expand(particles, -1, -1)
    return _ConcretePairwiseMarginals.apply(value.contiguous(), logits.contiguous(), temperature.contiguous(),
                                            log_weights.detach().contiguous(), compiled, log_space)


# Dispatch -------------------------------------------------------------------------------------


class FusedTable(NamedTuple):
    """
    A site's pairwise marginals from a fused kernel, for
    :func:`~pyro_hfvae.ops.mixture_log_marginals` (in place of a table callable).

    :param callable marginals: ``(rows, log_weights) -> (variables, site)``: ``rows`` a slice
        of the samples, ``log_weights`` a ``(len(rows), M)`` tensor or a constant (a float);
        ``variables`` is ``(P, len(rows), V)``, the per-variable log marginals with the
        weights applied, and ``site`` the ``(P, len(rows), M)`` pairwise table of the site.
    :param str kind: the kernel (``"normal"``, ``"concrete"``), for logs and tests.
    """

    marginals: Callable[[slice, "torch.Tensor | float"], tuple[torch.Tensor, torch.Tensor]]
    kind: str


def _is_concrete(fn: Distribution) -> bool:
    # A Concrete or its logarithm's distribution, with one temperature (torch's density takes no other).
    if isinstance(fn, RelaxedOneHotCategorical):
        fn = fn.base_dist
    return isinstance(fn, ExpRelaxedCategorical) and torch.as_tensor(fn.temperature).numel() == 1


def _front(tensor: torch.Tensor, layout: PlateLayout, shape: torch.Size, event_ndim: int) -> torch.Tensor:
    # ``tensor`` expanded to ``shape`` (batch + event), as (P, B, V, *event[variables:]).
    tensor = layout.front(tensor.expand(shape), len(shape) - event_ndim)
    tensor = tensor.expand((layout.num_particles, layout.batch_size) + tensor.shape[2:])
    return tensor


def fused_table(
    fn: Distribution,
    value: torch.Tensor,
    layout: PlateLayout,
    var_ndim: int,
    *,
    masked: bool = True,
    concrete: str = "relaxed",
    compiled: bool = False,
    rows: torch.Tensor | None = None,
) -> FusedTable | None:
    """
    The fused kernel for a site whose pairwise table would be
    ``pairwise_log_prob(lambda f, v: variable_log_prob(f, v, var_ndim, masked=masked, concrete=concrete), ...)``,
    or ``None`` where none applies (then use the generic table).

    A kernel applies where ``fn``, after unwrapping ``Independent``, ``Expanded`` and
    ``Masked`` wrappers, is a :class:`~torch.distributions.Normal` with torch's own
    ``log_prob`` (every event element a variable) or a
    :class:`~torch.distributions.RelaxedOneHotCategorical` or its logarithm's distribution
    (``ExpRelaxedCategorical``, as the objectives score a Concrete) with one temperature
    (torch's density takes no other) scored ``concrete="relaxed"`` (every Concrete of the
    site a variable), and no mask is applied (``masked=False``, or
    ``fn`` masks nothing out: a masked entry scores 0, which the kernels do not model).

    :param ~torch.distributions.Distribution fn: the components' distribution, batched over the data plate.
    :param torch.Tensor value: the site's value (``layout.batch_size`` along the data axis).
    :param PlateLayout layout: where the particle and data plates are.
    :param int var_ndim: leading event dims that index variables.
    :param bool masked: whether the scoring applies ``fn``'s masks.
    :param str concrete: the Concrete scoring (only ``"relaxed"`` is fused).
    :param bool compiled: use the :func:`torch.compile` kernels.
    :param torch.Tensor rows: the samples scored (the rows of the table), shaped like ``value``
        but with any number ``R`` of them along the data axis, e.g. the samples of the global
        batch of a data-parallel run (:func:`~pyro_hfvae.ops.tree_marginals` with
        ``global_batch=True``) against this rank's ``layout.batch_size`` components; the
        kernels take any ``(R, B)`` weights. Default: ``value`` (``R = B``).
    :rtype: FusedTable or None

    Example::

        >>> import pyro.distributions as dist
        >>> layout = PlateLayout("data", -1, 3, 10, None, 1)
        >>> fn = dist.Normal(torch.zeros(3, 2), 1.0).to_event(1)
        >>> fused_table(fn, fn.sample(), layout, 1).kind
        'normal'
        >>> fused_table(fn.mask(torch.tensor([True, False, True])), fn.sample(), layout, 1) is None
        True
    """
    if masked and distribution_mask(fn) is not None:
        return None
    inner = _unwrap(fn, independent=True)
    value = soft_value(value)
    shape = torch.broadcast_shapes(value.shape, fn.batch_shape + fn.event_shape)
    if value.shape != shape or not value.is_floating_point():
        return None
    event_ndim = len(fn.event_shape)
    data_axis = len(shape) - event_ndim + layout.data_dim
    row_values = value if rows is None else soft_value(rows)
    row_shape = shape[:data_axis] + row_values.shape[data_axis : data_axis + 1] + shape[data_axis + 1 :]
    if row_values.shape != row_shape or row_values.dtype != value.dtype:
        return None
    row_layout = dataclasses.replace(layout, batch_size=row_shape[data_axis])
    num_rows = row_layout.batch_size
    if isinstance(inner, Normal) and type(inner).log_prob is Normal.log_prob and var_ndim == event_ndim:
        kind = "normal"
        params = [_front(p, layout, shape, event_ndim).reshape(layout.num_particles, layout.batch_size, -1)
                  for p in (inner.loc, inner.scale)]
        value = _front(row_values, row_layout, row_shape, event_ndim).reshape(layout.num_particles, num_rows, -1)
        kernel = normal_pairwise_marginals
    elif _is_concrete(inner) and concrete == "relaxed" and var_ndim == event_ndim - 1:
        kind = "concrete"
        log_space = isinstance(inner, ExpRelaxedCategorical)
        num_classes = shape[-1]
        logits = _front(inner.logits, layout, shape, event_ndim).reshape(layout.num_particles, layout.batch_size,
                                                                         -1, num_classes)
        temperature = torch.as_tensor(inner.temperature, dtype=logits.dtype, device=logits.device)
        params = [logits, temperature.reshape(()).expand(logits.shape[:-1])]
        value = _front(row_values, row_layout, row_shape, event_ndim).reshape(layout.num_particles, num_rows, -1,
                                                                              num_classes)
        kernel = functools.partial(concrete_pairwise_marginals, log_space=log_space)
    else:
        return None

    def marginals(rows: slice, log_weights: "torch.Tensor | float") -> tuple[torch.Tensor, torch.Tensor]:
        start, stop, _ = rows.indices(num_rows)
        if not isinstance(log_weights, torch.Tensor):
            log_weights = value.new_full((stop - start, layout.batch_size), float(log_weights))
        return kernel(value[:, start:stop], *params, log_weights, compiled=compiled)

    return FusedTable(marginals, kind)
