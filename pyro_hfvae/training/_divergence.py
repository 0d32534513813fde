# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Divergence of a training run: finding the parameters, gradients or observations that are not
finite, and the :class:`~pyro_hfvae.infer.NonFiniteLossError` that stops the run naming them, the
last good checkpoint and the fix (private: used by :class:`~pyro_hfvae.training.trainer.Trainer`).
"""
from pathlib import Path

import pyro
import torch
from pyro.infer.util import zero_grads

from pyro_hfvae.infer.terms_elbo import NonFiniteLossError


def _non_finite_parameters() -> list[str]:
    """Names of the Pyro parameters with a NaN or infinite entry."""
    return sorted(name for name, p in pyro.get_param_store().named_parameters() if not torch.isfinite(p).all())


def _check_checkpoint_parameters() -> None:
    """
    Raises a :class:`~pyro_hfvae.infer.NonFiniteLossError` if a Pyro parameter is not finite:
    no checkpoint may hold it.
    """
    bad = _non_finite_parameters()
    if bad:
        raise NonFiniteLossError(f"expected finite parameters before writing a checkpoint but {bad} are not "
                                 "finite; the checkpoint was not written")


def _check_gradients(param_trace) -> None:
    """
    Raises a :class:`~pyro_hfvae.infer.NonFiniteLossError` naming the parameters of ``param_trace`` (a
    ``poutine.trace(param_only=True)`` trace) whose gradients are not finite, after zeroing every
    gradient so that the failed step leaves no trace.
    """
    sites = [(name, site["value"].unconstrained()) for name, site in param_trace.nodes.items()]
    grads = [(name, p.grad) for name, p in sites if p.grad is not None]
    if not grads:
        return
    finite = torch.stack([torch.isfinite(g).all() for _, g in grads]).tolist()
    if all(finite):
        return
    bad = [name for (name, _), ok in zip(grads, finite) if not ok]
    zero_grads({p for _, p in sites})
    raise NonFiniteLossError(f"expected finite gradients but the gradients of {len(bad)} parameters are not "
                             f"finite: {bad[:8]}{' ...' if len(bad) > 8 else ''} (the loss was finite)")


def _validation_failure(error: ValueError, x: torch.Tensor) -> NonFiniteLossError | None:
    """
    The non-finite parameters or observations ``x`` behind the ``ValueError`` of a model or
    guide (distribution validation rejects NaN parameters before any loss exists), or ``None``
    where everything is finite (the error has another cause).
    """
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    bad = _non_finite_parameters()
    if bad:
        return NonFiniteLossError(f"expected finite parameters but {bad} are not finite (the model "
                                  f"failed with: {first_line})")
    if not torch.isfinite(x).all():
        return NonFiniteLossError(f"expected finite observations but the batch holds NaN or infinite "
                                  f"values (the model failed with: {first_line}); check the data set")
    return None


def _diverged(error: NonFiniteLossError, failed_step: int,
              last_checkpoint: tuple[int, Path] | None) -> NonFiniteLossError:
    """
    The error that stops a diverged run: ``error`` at ``failed_step``, with the parameters that
    are not finite, and the last good checkpoint (``(step, path)``, or ``None`` if none was
    written) to continue from with a lower learning rate.
    """
    bad = _non_finite_parameters()
    if bad and str(bad) not in str(error):
        error = f"{error}; non-finite parameters: {bad}"
    if last_checkpoint is None:
        last = "no checkpoint was written yet"
        fix = "start again with a lower learning rate (--lr)"
    else:
        good_step, path = last_checkpoint
        last = f"the last good checkpoint is {path} (step {good_step})"
        fix = f"continue from it with a lower learning rate: pyro-hfvae train --resume {path.parent} --lr ..."
    return NonFiniteLossError(f"training stopped at step {failed_step}: {error} {last}; {fix}")
