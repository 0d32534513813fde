# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Compiled variants of the objectives, named as Pyro names its own (``JitTrace_ELBO``).
"""

import logging
from typing import Any

from pyro_hfvae.infer.hfvae import HFVAELoss

logger = logging.getLogger(__name__)

__all__ = [
    "JitHFVAELoss",
]


class JitHFVAELoss(HFVAELoss):
    r"""
    :class:`~pyro_hfvae.HFVAELoss` whose pairwise tables run through :func:`torch.compile`\ d
    kernels: ``HFVAELoss(..., kernel="compiled")``. It takes the same arguments (all but
    ``kernel``) and gives the same values and gradients up to floating-point rounding (a
    few ulps of the dtype per table entry: compiled float32 agrees with the eager loss to
    about ``1e-6`` relative).

    What is compiled is the ``B x B`` work of Normal and Concrete (relaxed-scored) latent
    sites (:mod:`pyro_hfvae.ops.fused_marginals`), which dominates a step at large batches;
    the model, the guide and the rest of the objective run eagerly, as in
    :class:`~pyro_hfvae.HFVAELoss`.

    **What it cannot do.**

    - *Compilation costs time once*: the first step compiles the forward and backward
      kernels of each distribution used (several seconds each on a CPU). The kernels are
      compiled per shape: the first shape gets a static kernel, a second one (the last,
      smaller chunk of rows under ``pairwise_memory_mb``, another batch size, another
      number of particles or variables) one more compilation, of a kernel with dynamic
      sizes that then serves every shape, a little slower than the static one. Keep the
      batch size fixed (``drop_last=True``) for the fastest steps.
    - *Other distributions* (Laplace, Dirichlet, MultivariateNormal, ...), masked sites
      scored with their masks, and ``concrete_scoring="argmax"`` have no fused kernel and
      take the generic eager path.
    - *Where compilation fails* (no C++ compiler for the CPU backend, no Triton for a GPU)
      a :class:`RuntimeWarning` says so once and the eager fused kernels are used instead:
      the same values, at the speed of :class:`~pyro_hfvae.HFVAELoss`.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(x):
        ...     with pyro.plate("data", size=100, subsample=torch.arange(4)):
        ...         z = pyro.sample("z", dist.Normal(0., 1.).expand([2]).to_event(1))
        ...         pyro.sample("x", dist.Normal(z, 1.).to_event(1), obs=x)
        >>> def guide(x):
        ...     with pyro.plate("data", size=100, subsample=torch.arange(4)):
        ...         pyro.sample("z", dist.Normal(x, 1.).to_event(1))
        >>> x = torch.randn(4, 2)
        >>> trace = pyro.poutine.trace(guide).get_trace(x)
        >>> model_r, guide_r = (pyro.poutine.replay(f, trace=trace) for f in (model, guide))
        >>> jit, eager = JitHFVAELoss(beta=4.0), HFVAELoss(beta=4.0)
        >>> abs(jit.loss(model_r, guide_r, x) / eager.loss(model_r, guide_r, x) - 1) < 1e-5
        True
    """

    loss_name = "JitHFVAELoss"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "kernel" in kwargs:
            raise TypeError(f"expected no kernel= for JitHFVAELoss (its kernel is 'compiled') but got "
                            f"kernel={kwargs['kernel']!r}; use HFVAELoss(kernel=...) for another kernel")
        super().__init__(*args, kernel="compiled", **kwargs)
