# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Divergence of a training run: finding the parameters, gradients, observations or sample sites
that are not finite, watching for a loss that explodes while staying finite, and the
:class:`~pyro_hfvae.infer.NonFiniteLossError` that stops the run naming them, the last good
checkpoint and the fix (private: used by :class:`~pyro_hfvae.training.trainer.Trainer`).
"""
import collections
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from pyro import poutine

from pyro_hfvae.infer.terms_elbo import NonFiniteLossError

#: A loss exceeding the median of the preceding losses by more than this many times their
#: scale (``max(|median|, 1)``) ...
EXPLOSION_FACTOR = 1e3
#: ... on this many consecutive steps has exploded.
EXPLOSION_PATIENCE = 3
#: The number of preceding losses whose median is the reference.
EXPLOSION_WINDOW = 1000


class ExplodingLossError(NonFiniteLossError):
    """
    Raised when the loss of a training run stays finite but grows by orders of magnitude
    above its own history (see :class:`~pyro_hfvae.training.trainer.Trainer`): the run has
    diverged all the same, typically because the learning rate is far too high.
    """


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


def _release_grads(params) -> None:
    """As :func:`pyro.infer.util.zero_grads`, without allocating zeros: the next backward pass starts afresh."""
    for p in params:
        p.grad = None


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
    # One reduction and one host sync in the common case: a sum is finite only if every
    # summand is (a finite sum that overflows merely falls through to the exact check).
    if torch.isfinite(torch.stack([g.sum() for _, g in grads]).sum()):
        return
    finite = torch.stack([torch.isfinite(g).all() for _, g in grads]).tolist()
    if all(finite):
        return
    bad = [name for (name, _), ok in zip(grads, finite) if not ok]
    _release_grads(p for _, p in sites)
    raise NonFiniteLossError(f"expected finite gradients but the gradients of {len(bad)} parameters are not "
                             f"finite: {bad[:8]}{' ...' if len(bad) > 8 else ''} (the loss was finite)")


def _largest_parameter() -> tuple[str, float]:
    """The Pyro parameter with the largest finite magnitude, and that magnitude (``("", 0.0)`` if none)."""
    largest = ("", 0.0)
    for name, p in pyro.get_param_store().named_parameters():
        values = p.detach()
        values = values[torch.isfinite(values)]
        if values.numel():
            magnitude = float(values.abs().max())
            if magnitude > largest[1]:
                largest = (name, magnitude)
    return largest


def _first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (Pyro and torch append tensor dumps and traces)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(":")


def _non_finite_sites(guide: Callable, model: Callable, args: tuple, kwargs: Mapping[str, Any]) -> list[str]:
    """
    The sample sites of ``guide`` (and of ``model`` replayed against it) whose distribution
    arguments or values are not finite, found by running both without distribution validation.
    """
    bad: list[str] = []
    try:
        with pyro.validation_enabled(False), torch.no_grad(), poutine.block():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    except Exception:  # the model may fail without validation as well; name what the guide gave
        model_trace = None
        try:
            with pyro.validation_enabled(False), torch.no_grad(), poutine.block():
                guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        except Exception:
            return bad
    for trace in (guide_trace, model_trace):
        if trace is None:
            continue
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or name in bad:
                continue
            tensors = [v for v in vars(site["fn"]).values() if isinstance(v, torch.Tensor)]
            tensors += [site["value"]] if isinstance(site["value"], torch.Tensor) else []
            if any(t.is_floating_point() and not torch.isfinite(t).all() for t in tensors):
                bad.append(name)
    return bad


def _validation_failure(error: Exception, x: torch.Tensor,
                        sites: Callable[[], list[str]] | None = None) -> NonFiniteLossError | None:
    """
    The non-finite parameters, observations ``x`` or distribution arguments behind the
    ``ValueError`` (or ``RuntimeError``) of a model or guide: distribution validation rejects
    non-finite arguments before any loss exists. ``sites`` lists the sample sites with non-finite
    arguments (:func:`_non_finite_sites`). ``None`` where everything is finite: the error has
    another cause.
    """
    first_line = _first_line(error)
    bad = _non_finite_parameters()
    if bad:
        return NonFiniteLossError(f"expected finite parameters but {bad} are not finite (the model "
                                  f"failed with: {first_line})")
    if x.is_floating_point() and not torch.isfinite(x).all():
        return NonFiniteLossError(f"expected finite observations but the batch holds NaN or infinite "
                                  f"values (the model failed with: {first_line}); check the data set")
    bad_sites = sites() if sites is not None else []
    if bad_sites:
        name, magnitude = _largest_parameter()
        return NonFiniteLossError(f"expected finite distribution arguments but those of the sites {bad_sites} are "
                                  f"not finite, from finite parameters (the largest, {name}, reaches "
                                  f"{magnitude:.3g}; the model failed with: {first_line})")
    return None


class _ExplosionMonitor:
    """
    Watches the losses of a run for an explosion: a loss above the median of the preceding
    :data:`EXPLOSION_WINDOW` losses by more than :data:`EXPLOSION_FACTOR` times their scale
    ``max(|median|, 1)`` is suspect; :data:`EXPLOSION_PATIENCE` suspect steps in a row are an
    explosion. A single spike is tolerated; a run whose learning rate is far too high (its
    loss jumping by tens of orders of magnitude while staying finite) is stopped within a few steps.
    """

    def __init__(self, factor: float = EXPLOSION_FACTOR, patience: int = EXPLOSION_PATIENCE,
                 window: int = EXPLOSION_WINDOW) -> None:
        self.factor = factor
        self.patience = patience
        self.history: collections.deque = collections.deque(maxlen=window)
        self.streak: list[tuple[int, float]] = []
        self.reference = math.nan

    @property
    def suspect(self) -> bool:
        """Whether the last loss was suspect (a checkpoint written now might hold exploded parameters)."""
        return bool(self.streak)

    def observe(self, step: int, loss: float) -> None:
        """
        Records the loss of ``step``.

        :raises ExplodingLossError: on the :data:`EXPLOSION_PATIENCE`-th suspect step in a row.
        """
        if self.history and math.isfinite(loss):
            if not self.streak:
                self.reference = float(np.median(self.history))
            scale = max(abs(self.reference), 1.0)
            if loss - self.reference > self.factor * scale:
                self.streak.append((step, loss))
                if len(self.streak) >= self.patience:
                    raise self.error()
            else:
                self.streak = []
        self.history.append(loss)

    def error(self) -> "ExplodingLossError":
        """The error describing the current streak of suspect losses."""
        first_step, first_loss = self.streak[0]
        name, magnitude = _largest_parameter()
        return ExplodingLossError(
            f"expected a loss within {self.factor:g} times the scale of its median {self.reference:.4g} but the "
            f"loss exploded from step {first_step} ({first_loss:.3g}) to {self.streak[-1][1]:.3g} over "
            f"{len(self.streak)} steps, with finite parameters (the largest, {name}, reaches {magnitude:.3g})")


def _diverged(error: NonFiniteLossError, failed_step: int, last_checkpoint: tuple[int, Path] | None,
              updated: bool = True, objective: Mapping[str, Any] | None = None) -> NonFiniteLossError:
    """
    The error that stops a diverged run: ``error`` at ``failed_step``, with the parameters that
    are not finite, and the last good checkpoint (``(step, path)``, or ``None`` if none was
    written) to continue from with a lower learning rate. Where no update was made yet
    (``updated`` false) and every parameter is finite, the learning rate cannot be at fault:
    the error points at the objective's settings (``objective``, the ``[objective]`` section) instead.
    The result has ``error``'s type.
    """
    bad = _non_finite_parameters()
    message = str(error)
    if bad and str(bad) not in message:
        message = f"{message}; non-finite parameters: {bad}"
    if not updated and not bad:
        weights = {k: v for k, v in (objective or {}).items() if isinstance(v, float)}
        settings = ", ".join(f"{k} = {v:g}" for k, v in sorted(weights.items(), key=lambda kv: -abs(kv[1])))
        cause = (f"the loss is not finite before any update, with finite parameters, so the learning rate is not "
                 f"at fault: the objective overflows; check its weights ([objective] {settings}) and the data")
        return type(error)(f"training stopped at step {failed_step}: {message}; {cause}")
    if last_checkpoint is None:
        last = "no checkpoint was written yet"
        fix = "start again with a lower learning rate (--lr)"
    else:
        good_step, path = last_checkpoint
        last = f"the last good checkpoint is {path} (step {good_step})"
        fix = f"continue from it with a lower learning rate: pyro-hfvae train --resume {path.parent} --lr ..."
    return type(error)(f"training stopped at step {failed_step}: {message}; {last}; {fix}")
