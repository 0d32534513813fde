# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The training loop of :class:`~pyro_hfvae.training.trainer.Trainer`: one SVI step, whose loss,
terms and gradients are checked to be finite (and agreed on by the ranks of a data-parallel
run), and a session of :meth:`~pyro_hfvae.training.trainer.Trainer.train`: its steps until the
target, the log file and progress bar, stop requests (signals, a callback's
``KeyboardInterrupt``) and the ``diverged`` and ``interrupted`` events (private: used by
:class:`~pyro_hfvae.training.trainer.Trainer`).
"""
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch
from pyro import poutine

from pyro_hfvae.infer.terms_elbo import NonFiniteLossError
from pyro_hfvae.training._divergence import (
    ExplodingLossError,
    _check_gradients,
    _diverged,
    _ExplosionMonitor,
    _non_finite_sites,
    _release_grads,
    _validation_failure,
)
from pyro_hfvae.training._run_components import _model_kwargs
from pyro_hfvae.training._run_log import _append_record
from pyro_hfvae.training._stop_requests import _StopRequests

if TYPE_CHECKING:
    from pyro_hfvae.training.trainer import Trainer

logger = logging.getLogger(__name__)


def _init_loop_state(trainer: "Trainer") -> None:
    """
    Sets the state that only the training loop reads, on a new ``trainer``: no step under way,
    the watch for an exploding loss, no periodic checkpoint postponed, no stop request.

    :param Trainer trainer: the trainer.
    """
    trainer._in_step = False
    trainer._explosion = _ExplosionMonitor()
    trainer._checkpoint_due = False
    # Stop requests of this rank (a signal, a callback's KeyboardInterrupt) and the ranks' agreement on them.
    trainer._signals = None
    trainer._stop_requested = False
    trainer._stop_agreed = False


def _step(trainer: "Trainer") -> dict[str, float]:
    """
    One SVI step of ``trainer`` on a fresh batch (see :meth:`Trainer.step
    <pyro_hfvae.training.trainer.Trainer.step>`).

    :param Trainer trainer: the trainer.
    :returns: the step's record: ``step``, ``loss`` and the objective's terms.
    :rtype: dict
    """
    trainer._in_step = True
    positions = trainer.sampler.next()[trainer._rows]
    x = trainer.observations(positions)
    objective = _objective(trainer)
    if trainer._parallel is None:
        loss, params = _loss_and_grads(trainer, objective, x, positions)
        terms = objective.terms
    else:
        failure, loss, params = None, math.nan, set()
        try:
            loss, params = _loss_and_grads(trainer, objective, x, positions)
        except Exception as error:  # every rank learns of it, so that none waits for the others in vain
            failure = error
        stop = trainer._stop_requested or (trainer._signals is not None and trainer._signals.received is not None)
        try:
            loss, terms, trainer._stop_agreed = trainer._parallel.agree(trainer.step_count + 1, failure, loss,
                                                                        objective.terms, stop)
        except BaseException:
            _release_grads(params)
            raise
    trainer.optimizer(params)
    _release_grads(params)
    if trainer.schedule is not None:
        trainer.schedule.step()
    trainer.step_count += 1
    trainer._in_step = False
    trainer.last_record = {"step": trainer.step_count, "loss": loss, **terms}
    return trainer.last_record


def _objective(trainer: "Trainer"):
    """The objective of ``trainer``'s next step: the warm-up's during ``[objective] warmup_steps``, then its loss."""
    if trainer.warmup_loss is not None and trainer.step_count < trainer.config["objective"]["warmup_steps"]:
        return trainer.warmup_loss
    return trainer.loss


def _loss_and_grads(trainer: "Trainer", objective, x: torch.Tensor,
                    positions: torch.Tensor) -> tuple[float, set[torch.Tensor]]:
    """This process's ``objective`` on the batch ``x`` and the parameters that have gradients, checked to be finite."""
    args, kwargs = (x, positions, trainer.dataset_size), _model_kwargs(trainer, positions)
    with poutine.trace(param_only=True) as capture:
        try:
            loss = objective.loss_and_grads(trainer.model.model, trainer.model.guide, *args, **kwargs)
        except (ValueError, RuntimeError) as error:
            # Distribution validation rejects non-finite arguments before any loss exists (torch's samplers
            # raise RuntimeError): name the parameters, observations or sites at fault.
            failure = _validation_failure(error, x, lambda: _non_finite_sites(trainer.model.guide,
                                                                              trainer.model.model, args, kwargs))
            if failure is None:
                raise
            raise failure from None
    params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
    _check_gradients(capture.trace)
    return loss, params


def _train_session(trainer: "Trainer", target: int, log_path: Path | None) -> str:
    """
    A session of :meth:`Trainer.train <pyro_hfvae.training.trainer.Trainer.train>`: steps
    ``trainer`` (:func:`_train_step`) until ``target`` steps are done in all or a stop is
    requested, and counts the session's seconds in its ``train_seconds``. A divergence is logged
    as a ``diverged`` event and raised diagnosed; an interruption between steps as an
    ``interrupted`` event.

    :param Trainer trainer: the trainer.
    :param int target: the total number of steps to reach.
    :param log_path: the log file the records are appended to (``None``: none).
    :returns: ``"completed"`` or ``"interrupted"``.
    :rtype: str
    """
    log_file = None
    progress_bar = None
    status = "completed"
    trainer._session_started = time.perf_counter()
    trainer._stop_requested = trainer._stop_agreed = False
    try:
        with _StopRequests() as stop:
            trainer._signals = stop
            if log_path is not None:
                log_file = open(log_path, "a", encoding="utf-8")
            if trainer.progress and trainer._is_main:
                from tqdm.auto import tqdm

                progress_bar = tqdm(total=target, initial=trainer.step_count, desc="training", unit="step",
                                    dynamic_ncols=True)
            while trainer.step_count < target:
                try:
                    _train_step(trainer, target, log_file, progress_bar)
                except NonFiniteLossError as error:
                    failed_step = trainer.step_count + 1 if trainer._in_step else trainer.step_count
                    diagnosis = _diverged(error, failed_step, trainer._last_checkpoint,
                                          updated=failed_step > 1, objective=trainer.config["objective"])
                    trainer._in_step = False
                    _append_event(trainer, log_file, "diverged", str(diagnosis), step=failed_step,
                                  cause="exploding" if isinstance(error, ExplodingLossError) else "non-finite",
                                  last_checkpoint=trainer._checkpointed_step())
                    raise diagnosis from None
                # In a data-parallel run every rank stops at the step the ranks agreed on.
                if stop.received is not None if trainer._parallel is None else trainer._stop_agreed:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if trainer._in_step:
            # Stopped inside a step: its state is not consistent, keep the last checkpoint.
            trainer._in_step = False
            logger.warning("stopped during step %d; the last checkpoint stands", trainer.step_count + 1)
            raise
        status = "interrupted"
        _append_event(trainer, log_file, "interrupted", f"stopped after step {trainer.step_count}")
    finally:
        if progress_bar is not None:
            progress_bar.close()
        if log_file is not None:
            log_file.close()
        trainer.train_seconds = trainer.elapsed_seconds()
        trainer._session_started = None
        trainer._signals = None
        if trainer._parallel is not None:
            logger.info("rank %d of %d: %.2f s of %.2f s training in collectives (gradients %.2f s, status "
                        "%.2f s; waiting for slower ranks included)", trainer._parallel.rank,
                        trainer._parallel.world_size,
                        trainer._parallel.communication_seconds + trainer.optimizer.communication_seconds,
                        trainer.train_seconds, trainer.optimizer.communication_seconds,
                        trainer._parallel.communication_seconds)
    return status


def _train_step(trainer: "Trainer", target: int, log_file: IO[str] | None, progress_bar) -> None:
    """
    One step of :meth:`Trainer.train <pyro_hfvae.training.trainer.Trainer.train>` with its log
    record, the watch for an exploding loss, the progress bar, the callbacks and the periodic
    checkpoint and evaluation.

    :param Trainer trainer: the trainer.
    :param int target: the total number of steps of the session.
    :param log_file: the open log file (``None``: none).
    :param progress_bar: a tqdm progress bar (``None``: none).
    """
    training = trainer.config["training"]
    record = trainer.step()
    step = trainer.step_count
    if log_file is not None and (step % training["log_every"] == 0 or step == target):
        _append_record(log_file, {**record, "seconds": trainer.elapsed_seconds()})
    trainer._explosion.observe(step, record["loss"])
    if step == target and trainer._explosion.suspect:
        # A run does not end (nor write its final checkpoint) while its loss is exploding.
        raise trainer._explosion.error()
    if progress_bar is not None:
        progress_bar.update(1)
        if step % training["log_every"] == 0 or step == target:
            progress_bar.set_postfix(_postfix(record), refresh=False)
    if trainer.information_flow is not None and trainer.schedule.completed_stage is not None and trainer._is_main:
        with trainer.evaluation_mode():
            trainer.information_flow(trainer.schedule)
    for callback in trainer.callbacks:
        try:
            callback(trainer, record)
        except KeyboardInterrupt:
            if trainer._parallel is None:
                raise
            # A stop request like a signal: the ranks agree on it in the next step and stop after it.
            logger.warning("rank %d: a callback asked to stop after step %d; every rank stops after the next "
                           "step", trainer._parallel.rank, step)
            trainer._stop_requested = True
            break
    if trainer.run_dir is not None and training["checkpoint_every"] and (step % training["checkpoint_every"] == 0
                                                                         or trainer._checkpoint_due):
        # Postponed while the loss looks like exploding: the last checkpoint must stay a good one.
        trainer._checkpoint_due = trainer._explosion.suspect
        if not trainer._checkpoint_due:
            trainer.save_checkpoint()
    if training["eval_every"] and step % training["eval_every"] == 0 and step != target and trainer._is_main:
        trainer._periodic_evaluation()


def _append_event(trainer: "Trainer", log_file: IO[str] | None, event: str, message: str, **fields: Any) -> None:
    """Appends an event (``step``, ``event``, ``message`` and ``fields``) to the log file, if there is one."""
    if log_file is not None:
        _append_record(log_file, {"step": trainer.step_count, "event": event, "message": message, **fields})


def _postfix(record: Mapping[str, float]) -> dict[str, str]:
    """What the progress bar shows of a step's record: the loss and the terms that are not per group or site."""
    shown = {"loss": record["loss"]}
    shown.update((k, v) for k, v in record.items() if k not in ("step", "loss") and "/" not in k)
    return {k: f"{v:.4g}" for k, v in shown.items()}
