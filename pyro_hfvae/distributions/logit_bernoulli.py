# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
r"""
A Bernoulli likelihood whose log density is computed from its logits at the same cost however
confident the decoder is.

The log density of :math:`x \in [0, 1]` under logits :math:`l` is

.. math::

    \log p(x \mid l) = x\, l - \log(1 + e^{l})
    = x\, l - \max(l, 0) - \log\bigl(1 + e^{-|l|}\bigr),

with gradients :math:`\partial/\partial l = x - \sigma(l)` and :math:`\partial/\partial x = l`.
torch computes it through ``binary_cross_entropy_with_logits``, whose ``log_sigmoid`` takes a
slow path on this project's CPU (and ``log1p`` another) once the logits are large, as they are
for the background pixels of a trained image model: forward and backward over a million pixels
took 12 - 33 ms against 6 ms for moderate logits. Here :math:`e^{-|l|}` is computed as
:func:`~pyro_hfvae.ops.logsumexp.floored_exp` (exponent at least ``-80``) and the gradient as
:math:`x - \sigma(l)` in one pass: 4 - 5 ms in every regime (``benchmarks/bench_likelihood.py``).
Values agree with :class:`torch.distributions.Bernoulli` to the dtype's rounding (``log`` of
:math:`1 + e^{-|l|}` instead of ``log1p`` adds the rounding of :math:`1 + e^{-|l|}`, e.g.
:math:`6 \times 10^{-8}` in float32; the tests hold float32 to ``1e-6`` and float64 to
``1e-13``) and gradients to :math:`e^{-80}`.

References

[1] Auto-Encoding Variational Bayes,
    Diederik P. Kingma, Max Welling (ICLR 2014)
"""

import pyro.distributions as dist
import torch
from torch.autograd.function import once_differentiable

from pyro_hfvae.ops.logsumexp import floored_exp

__all__ = [
    "LogitBernoulli",
]


class _BernoulliLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, value):
        log_normaliser = floored_exp(logits.abs().neg_(), inplace=True).add_(1.0).log_()
        out = value * logits
        out.sub_(logits.clamp_min(0.0)).sub_(log_normaliser)
        ctx.save_for_backward(logits, value)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        logits, value = ctx.saved_tensors
        grad_logits = grad_value = None
        if ctx.needs_input_grad[0]:
            sigmoid = torch.sigmoid(logits)
            # In place where nothing broadcasts (the usual case: one allocation).
            residual = sigmoid.neg_().add_(value) if sigmoid.shape == grad_out.shape else value - sigmoid
            grad_logits = residual.mul_(grad_out).sum_to_size(logits.shape)
        if ctx.needs_input_grad[1]:
            grad_value = (grad_out * logits).sum_to_size(value.shape)
        return grad_logits, grad_value


class LogitBernoulli(dist.Bernoulli):
    r"""
    :class:`pyro.distributions.Bernoulli` whose :meth:`log_prob` stays fast where the logits are
    large (see the module docstring); everything else is Pyro's. A drop-in replacement for
    ``dist.Bernoulli(logits=...)`` as an image likelihood; its log density is differentiable
    once (no gradients of gradients).

    :param torch.Tensor probs: the probability of 1 (or ``logits``, not both).
    :param torch.Tensor logits: the log odds of 1.

    Example::

        >>> logits = torch.tensor([-200.0, 0.0, 3.0])
        >>> LogitBernoulli(logits=logits).log_prob(torch.tensor([1.0, 1.0, 0.0]))
        tensor([-200.0000,   -0.6931,   -3.0486])
        >>> torch.distributions.Bernoulli(logits=logits).log_prob(torch.tensor([1.0, 1.0, 0.0]))
        tensor([-200.0000,   -0.6931,   -3.0486])
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """
        :param torch.Tensor value: values in ``[0, 1]`` (0 and 1, or grey levels scored by the same formula).
        :returns: :math:`x\\, l - \\log(1 + e^{l})`, shaped as ``value`` and the batch broadcast.
        :rtype: torch.Tensor
        """
        if self._validate_args:
            self._validate_sample(value)
        logits = self.logits
        if not value.dtype.is_floating_point:
            value = value.to(logits.dtype)
        return _BernoulliLogProb.apply(logits, value)
