# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Training runs from a configuration: Pyro SVI with any of the library's objectives, with
logging, periodic checkpoints and evaluation, exact resumption and divergence diagnosis.

A run directory holds::

    config.toml        the resolved configuration
    log.jsonl          one JSON record per logged step: loss and every term of the objective
    checkpoint.pt      the latest checkpoint (see pyro_hfvae.training.checkpoint)
    evaluations.jsonl  periodic evaluations (with training.eval_every)
    metrics.json       the final evaluation (Trainer.evaluate)
    figures/, summary.md, summary.html   written by pyro_hfvae.training.run_summary
"""
import contextlib
import inspect
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from pyro import poutine

from pyro_hfvae.infer.inference_data import latent_groups, latent_means, latent_posterior
from pyro_hfvae.infer.terms_elbo import NonFiniteLossError
from pyro_hfvae.training._device import _pick_device
from pyro_hfvae.training._divergence import (
    ExplodingLossError,
    _check_checkpoint_parameters,
    _check_gradients,
    _diverged,
    _ExplosionMonitor,
    _first_line,
    _non_finite_sites,
    _release_grads,
    _validation_failure,
)
from pyro_hfvae.training._random_batches import _RandomBatches
from pyro_hfvae.training._resumable_settings import _changed_settings, _check_resumable, _fixed_settings
from pyro_hfvae.training._run_components import (
    _build_dataset,
    _build_model,
    _build_objective,
    _build_optimizer,
    _build_schedule,
)
from pyro_hfvae.training._run_evaluation import (
    _disentanglement_metrics,
    _evaluation_record,
    _hold_out_summary,
    _information_positions,
    _information_summary,
)
from pyro_hfvae.training._run_log import _append_record, _keep_records_through, _write_json, read_jsonl
from pyro_hfvae.training._stop_requests import _StopRequests
from pyro_hfvae.training.allocator import retain_freed_memory
from pyro_hfvae.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    param_store_state,
    restore_rng_state,
    save_checkpoint,
)
from pyro_hfvae.training.config import ConfigError, dumps_config, earlier_defaults, load_config, resolve_config
from pyro_hfvae.training.distributed import DistributedOptimizer, _data_parallel, _rank_seed
from pyro_hfvae.util import atomic_file, forked_rng, remove_atomic_temporaries

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "EVALUATIONS_FILE",
    "EVALUATION_PRESETS",
    "ExplodingLossError",
    "LOG_FILE",
    "METRICS_FILE",
    "Trainer",
    "read_jsonl",
]

#: The resolved configuration of a run.
CONFIG_FILE = "config.toml"
#: One JSON record per logged step: ``step``, ``loss``, every term, ``seconds``; and events.
LOG_FILE = "log.jsonl"
#: The latest checkpoint.
CHECKPOINT_FILE = "checkpoint.pt"
#: The periodic evaluations (``[training] eval_every``).
EVALUATIONS_FILE = "evaluations.jsonl"
#: The last evaluation (:meth:`Trainer.evaluate`).
METRICS_FILE = "metrics.json"

#: Evaluation presets: disentanglement metrics (only for data sets with factors), their
#: sample sizes, per-metric options, and the number of data points whose exact aggregate
#: posterior gives I(x; z). ``fast`` suits a CPU (about 20 s on one core; it leaves out DCI,
#: whose gradient-boosted trees take minutes even on 2,000 points); ``full`` is
#: disentanglement_lib's protocol (10,000 / 5,000 points, every metric, DCI's trees on the CPU
#: included), for a GPU machine; ``none`` computes only I(x; z).
EVALUATION_PRESETS: dict[str, dict[str, Any]] = {
    "fast": {
        "metrics": ("mig", "mig_sup", "modularity", "sap", "factor_vae"),
        "num_train": 2000,
        "num_test": 1000,
        "options": {"factor_vae": {"num_train": 1000, "num_eval": 500, "num_variance_estimate": 2000}},
        "information_points": 2000,
    },
    "full": {
        "metrics": ("mig", "mig_sup", "modularity", "explicitness", "sap", "dci", "factor_vae", "beta_vae"),
        "num_train": 10000,
        "num_test": 5000,
        "options": {},
        "information_points": 10000,
    },
    "none": {"metrics": (), "num_train": 0, "num_test": 0, "options": {}, "information_points": 2000},
}


def _check_run_dir_writable(run_dir: Path) -> None:
    """
    Raises an ``OSError`` with the fix if ``run_dir`` cannot hold a run: it is a file, lies under
    a file, or its nearest existing folder is not writable. Nothing is created.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"expected a directory for the run but {run_dir} is a file; choose another --out")
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"expected a directory for the run but {existing}, above {run_dir}, is a file; "
                                 "choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"expected a writable directory for the run but {existing} is not writable; choose "
                              "another --out or change its permissions")



class Trainer:
    """
    Trains a model of the library from a configuration (see :mod:`pyro_hfvae.training.config`) with
    Pyro SVI, and evaluates it.

    Each :meth:`step` draws a batch from the data set's batched accessor
    (``dataset.observations(indices)``, on the training device), evaluates the objective and
    its gradients, checks that both are finite, and updates the parameters; :meth:`train`
    repeats it up to ``[training] steps``, logging every term of the objective to
    ``log.jsonl``, writing a checkpoint every ``checkpoint_every`` steps and when it is
    stopped (Ctrl-C, SIGTERM or a ``KeyboardInterrupt`` raised by a callback), and
    evaluating every ``eval_every`` steps. A run continued with :meth:`from_run` produces
    the same parameters, bit for bit on a CPU, as one that was never interrupted: the
    checkpoint holds the parameters, the optimiser and schedule states, and every random
    generator's state, including the batch order's.

    A loss, term, gradient or distribution argument that is not finite stops training with a
    :class:`~pyro_hfvae.infer.NonFiniteLossError` naming the terms, sites or parameters at fault
    and the last good checkpoint; nothing is written after it. So does a loss that explodes
    while staying finite (an :class:`ExplodingLossError`): more than 1,000 times the scale of
    the median of the preceding 1,000 losses above it, on 3 steps in a row (periodic checkpoints
    are postponed while it is that high). A ``diverged`` event in ``log.jsonl`` records the
    failed step, the cause and the last good checkpoint's step (see :doc:`/errors`).

    The trainer uses Pyro's global param store, which it clears when it is created: train
    one model at a time in a process. It also sets torch's number of CPU threads to
    ``[training] num_threads`` (default 1; 0 leaves torch's default) and, where
    ``[training] retain_freed_memory`` is true (the default), has the C library's allocator keep
    freed memory for the next step (:func:`~pyro_hfvae.training.allocator.retain_freed_memory`),
    and sets :func:`torch.set_flush_denormal` to ``[training] flush_denormal`` (default true:
    subnormal floats count as zero, which keeps the optimiser's moments of weights without
    gradients from slowing it down; torch sets the mode of the calling thread). These settings
    are process-wide.

    :param dict config: a configuration (resolved or not; ``None``: the embedded default).
    :param run_dir: the run directory (``None``: nothing is written).
    :param bool progress: show a tqdm progress bar with the loss and the terms.
    :param callbacks: functions ``callback(trainer, record)`` called after every step with
        the step's record (``step``, ``loss`` and the terms).
    :param bool overwrite: allow a ``run_dir`` that already holds a run (it is started anew).

    Example::

        >>> import tempfile
        >>> config = {"data": {"name": "digits", "subset": 64}, "training": {"steps": 3, "batch_size": 16},
        ...           "model": {"style_dim": 2, "num_classes": 0, "hidden_dim": 16}}
        >>> trainer = Trainer(config, tempfile.mkdtemp())
        >>> trainer.train()
        'completed'
        >>> trainer.step_count, sorted(trainer.last_record)[:3]
        (3, ['dimwise_kl', 'dimwise_kl/style', 'elbo'])
    """

    def __init__(self, config: Mapping[str, Any] | None = None, run_dir: str | os.PathLike | None = None, *,
                 progress: bool = False, callbacks: Sequence[Callable[["Trainer", dict], None]] = (),
                 overwrite: bool = False) -> None:
        run_dir = None if run_dir is None else Path(run_dir)
        if run_dir is not None:
            _check_run_dir_writable(run_dir)
            if not overwrite and (run_dir / CHECKPOINT_FILE).exists():
                raise FileExistsError(f"expected a new run directory but {run_dir} already holds a run "
                                      f"({CHECKPOINT_FILE}); continue it with Trainer.from_run (pyro-hfvae train "
                                      f"--resume {run_dir}) or choose another directory")
        # Everything is checked (configuration, data set, model) before the run directory is created.
        self._build(config, run_dir, progress, callbacks)
        if self._writes:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise OSError(error.errno, f"could not create the run directory {run_dir} ({error.strerror}); "
                                           "choose another --out") from None
            remove_atomic_temporaries(self.run_dir)
            for name in (LOG_FILE, EVALUATIONS_FILE, METRICS_FILE, CHECKPOINT_FILE):
                (self.run_dir / name).unlink(missing_ok=True)
            self._write_config()

    def _hold_out(self, data: Mapping[str, Any]) -> np.ndarray | None:
        """Sets the ``[data] hold_out`` on the data set; its held-in indices (``None``: nothing held out)."""
        hold_out = data.get("hold_out", {})
        if not hold_out:
            return None
        if not hasattr(self.dataset, "held_in_indices"):
            raise ConfigError(f"expected a data set with factors of variation for [data] hold_out but "
                              f"{data['name']} has none; remove hold_out")
        try:
            self.dataset.hold_out = hold_out
        except (ValueError, TypeError) as error:
            raise ConfigError(f"[data] hold_out: {error}") from error
        return self.dataset.held_in_indices()

    def _build(self, config: Mapping[str, Any] | None, run_dir: Path | None, progress: bool,
               callbacks: Sequence[Callable[["Trainer", dict], None]]) -> None:
        """Builds the data set, model, objective, optimiser and schedule from the configuration."""
        self.config = resolve_config(config)
        self.run_dir = run_dir
        self.progress = progress
        self.callbacks = list(callbacks)
        training = self.config["training"]
        if training["num_threads"]:
            torch.set_num_threads(training["num_threads"])
        if training["retain_freed_memory"]:
            retain_freed_memory()
        torch.set_flush_denormal(training["flush_denormal"])
        #: The data-parallel context (``None`` in a single process; see :mod:`~pyro_hfvae.training.distributed`).
        self._parallel, self.device = _data_parallel(_pick_device(training["device"]))
        pyro.clear_param_store()
        pyro.set_rng_seed(training["seed"])

        data = self.config["data"]
        #: The data set (its observations are read on :attr:`device`).
        self.dataset = _build_dataset(data, self.device)
        held_in = self._hold_out(data)
        available = len(self.dataset) if held_in is None else len(held_in)
        subset = data.get("subset", 0)
        if subset > available:
            what = "the size of" if held_in is None else "the held-in items of"
            raise ConfigError(f"expected [data] subset <= {available} ({what} {data['name']}) but got "
                              f"{subset}; use 0 for the whole data set")
        if subset and subset < available:
            chosen = np.sort(np.random.RandomState(training["seed"]).choice(available, subset, replace=False))
            #: Data-set indices of the training items (``None``: all of them).
            self.train_indices = torch.from_numpy(chosen if held_in is None else held_in[chosen]).to(self.device)
        elif held_in is not None:
            self.train_indices = torch.from_numpy(held_in).to(self.device)
        else:
            self.train_indices = None
        #: The number of training items ``N`` (the data plate's size).
        self.dataset_size = len(self.train_indices) if self.train_indices is not None else len(self.dataset)
        # First, since it checks the batch size against the data set's.
        self.sampler = _RandomBatches(self.dataset_size, training["batch_size"], training["seed"], self.device)
        # This rank's rows of every global batch (all of them in a single process).
        self._rows = slice(None) if self._parallel is None else self._parallel.rows(training["batch_size"])

        #: The model: an ``nn.Module`` with Pyro ``model`` and ``guide`` methods.
        self.model = _build_model(self.config["model"], self.dataset.observation_shape, self.device)
        model_parameters = inspect.signature(self.model.model).parameters
        self._takes_schedule = "schedule" in model_parameters
        self._labels = None
        if "labels" in model_parameters:
            if not hasattr(self.dataset, "labels"):
                raise ConfigError(f"[model] {self.config['model']['name']} learns from labels but [data] "
                                  f"{data['name']} has none; use a labelled data set (digits, mnist, fashion_mnist)")
            self._labels = torch.as_tensor(self.dataset.labels, device=self.device)
        self._labelled_items = None
        if self._labels is not None and getattr(self.model, "label_unit", "batch") == "item":
            #: Which training positions have known labels (a semi-supervised model with label_unit="item").
            self._labelled_items = self.model.labelled_items(self.dataset_size, training["seed"]).to(self.device)
        probe = self.observations(torch.arange(2, device=self.device))
        try:
            #: Group path of every latent site of the guide (``None``: no group).
            self.site_groups = latent_groups(self.model.guide, probe)
        except (ValueError, RuntimeError, TypeError, IndexError) as error:
            raise ConfigError(f"[model] {self.config['model']['name']}: expected a model that reads the observations "
                              f"of {data['name']} (shape {tuple(self.dataset.observation_shape)}) but its guide "
                              f"failed: {_first_line(error)}; check the [model] settings") from None
        #: The progressive schedule, or ``None``.
        self.schedule = _build_schedule(self.config["schedule"], self.site_groups)
        #: The objective (a :class:`~pyro_hfvae.infer.TermsELBO`).
        self.loss = _build_objective(self.config["objective"], self.schedule, distributed=self._parallel is not None)
        #: The Pyro optimiser (a :class:`~pyro_hfvae.training.distributed.DistributedOptimizer` in a data-parallel run).
        self.optimizer = _build_optimizer(self.config["optimizer"])
        if self._parallel is not None:
            self.optimizer = DistributedOptimizer(self.optimizer)
            self._parallel.broadcast_module(self.model)
            # Every rank draws its own latent samples: rank 0 from the seed, as a single process does.
            pyro.set_rng_seed(_rank_seed(training["seed"], self._parallel.rank))
        #: Training steps done.
        self.step_count = 0
        #: The record (``step``, ``loss``, terms) of the last step.
        self.last_record: dict[str, float] = {}
        #: Seconds spent in :meth:`train` by the sessions before the current one.
        self.train_seconds = 0.0
        self._session_started: float | None = None
        self.information_flow = None
        if self.schedule is not None:
            from pyro_hfvae.metrics.information_flow import InformationFlow

            #: Per-stage I(x; z_l) of a progressive run (:class:`~pyro_hfvae.metrics.information_flow.InformationFlow`).
            self.information_flow = InformationFlow(self.posterior, self._information_data(),
                                                    random_state=self.config["evaluation"]["seed"])
        self._in_step = False
        self._last_checkpoint: tuple[int, Path] | None = None
        self._explosion = _ExplosionMonitor()
        self._checkpoint_due = False
        # Stop requests of this rank (a signal, a callback's KeyboardInterrupt) and the ranks' agreement on them.
        self._signals: _StopRequests | None = None
        self._stop_requested = False
        self._stop_agreed = False

    @property
    def _is_main(self) -> bool:
        """Whether this process is rank 0 of a data-parallel run, or the only process."""
        return self._parallel is None or self._parallel.rank == 0

    @property
    def _writes(self) -> bool:
        """Whether this process writes the run directory: it has one and is rank 0 (or the only process)."""
        return self.run_dir is not None and self._is_main

    # ------------------------------------------------------------------ run directory

    def _write_config(self) -> None:
        header = ("pyro-hfvae run configuration, as resolved (every default listed).\n"
                  f"Continue the run with: pyro-hfvae train --resume {self.run_dir}")
        with atomic_file(self.run_dir / CONFIG_FILE, "w") as file:
            file.write(dumps_config(self.config, header=header))

    # ------------------------------------------------------------------ reading the model

    def observations(self, positions: torch.Tensor) -> torch.Tensor:
        """
        Observations of training items.

        :param torch.Tensor positions: positions in the training set (``0 .. dataset_size - 1``).
        :rtype: torch.Tensor
        """
        indices = positions if self.train_indices is None else self.train_indices[positions]
        return self.dataset.observations(indices)

    def posterior(self, x: torch.Tensor) -> dict:
        """
        :param torch.Tensor x: a batch of observations.
        :returns: the guide's distribution of every latent site
            (:func:`~pyro_hfvae.infer.inference_data.latent_posterior`), with every progressive level at full fade-in.
        :rtype: dict
        """
        return latent_posterior(self.model.guide, x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """
        The representation the metrics score: the posterior means of every latent site
        (:func:`~pyro_hfvae.infer.inference_data.latent_means`), flattened and concatenated.

        :param torch.Tensor x: a batch of observations.
        :returns: a tensor of shape ``(len(x), num_codes)``.
        :rtype: torch.Tensor
        """
        means = latent_means(self.model.guide, x)
        return torch.cat([m.reshape(len(x), -1) for m in means.values()], dim=-1)

    @contextlib.contextmanager
    def evaluation_mode(self) -> Iterator[None]:
        """
        A block for reading the model without changing the run: the model in ``eval`` mode,
        gradients off, and the random generators of the training device forked, so that
        evaluating, plotting or measuring in the middle of a run leaves its course (and its
        resumption) exactly as without them.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            with forked_rng(device=self.device), torch.no_grad():
                yield
        finally:
            self.model.train(was_training)

    def _model_kwargs(self, positions: torch.Tensor | None = None) -> dict[str, Any]:
        kwargs = {"schedule": self.schedule} if self._takes_schedule and self.schedule is not None else {}
        if self._labels is not None and positions is not None:
            # A semi-supervised model: the batch's labels, known for the fixed labelled items, or all known or none
            # (the batch's place in the epoch decides).
            labels = self._labels[positions if self.train_indices is None else self.train_indices[positions]]
            if self._labelled_items is not None:
                label_mask = self._labelled_items[positions]
            else:
                labelled = self.model.labelled_batch(self.sampler.position // self.sampler.batch_size - 1,
                                                     seed=self.config["training"]["seed"])
                label_mask = torch.full_like(labels, labelled, dtype=torch.bool)
            kwargs.update(labels=labels, label_mask=label_mask)
        return kwargs

    # ------------------------------------------------------------------ training

    def step(self) -> dict[str, float]:
        """
        One SVI step on a fresh batch.

        :returns: the step's record: ``step``, ``loss`` (Pyro's, scaled to the data set),
            and the objective's terms.
        :rtype: dict
        :raises NonFiniteLossError: if the loss, a term or a gradient is not finite (the
            parameters are then left unchanged); in a data-parallel run, on every rank alike if
            it is so on one of them.
        """
        self._in_step = True
        positions = self.sampler.next()[self._rows]
        x = self.observations(positions)
        if self._parallel is None:
            loss, params = self._loss_and_grads(x, positions)
            terms = self.loss.terms
        else:
            failure, loss, params = None, math.nan, set()
            try:
                loss, params = self._loss_and_grads(x, positions)
            except Exception as error:  # every rank learns of it, so that none waits for the others in vain
                failure = error
            stop = self._stop_requested or (self._signals is not None and self._signals.received is not None)
            try:
                loss, terms, self._stop_agreed = self._parallel.agree(self.step_count + 1, failure, loss,
                                                                      self.loss.terms, stop)
            except BaseException:
                _release_grads(params)
                raise
        self.optimizer(params)
        _release_grads(params)
        if self.schedule is not None:
            self.schedule.step()
        self.step_count += 1
        self._in_step = False
        self.last_record = {"step": self.step_count, "loss": loss, **terms}
        return self.last_record

    def _loss_and_grads(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[float, set[torch.Tensor]]:
        """This process's loss on the batch ``x`` and the parameters that have gradients, checked to be finite."""
        args, kwargs = (x, positions, self.dataset_size), self._model_kwargs(positions)
        with poutine.trace(param_only=True) as capture:
            try:
                loss = self.loss.loss_and_grads(self.model.model, self.model.guide, *args, **kwargs)
            except (ValueError, RuntimeError) as error:
                # Distribution validation rejects non-finite arguments before any loss exists (torch's samplers
                # raise RuntimeError): name the parameters, observations or sites at fault.
                failure = _validation_failure(error, x, lambda: _non_finite_sites(self.model.guide, self.model.model,
                                                                                  args, kwargs))
                if failure is None:
                    raise
                raise failure from None
        params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
        _check_gradients(capture.trace)
        return loss, params

    def train(self, steps: int | None = None) -> str:
        """
        Trains until ``steps`` steps are done in all (default ``[training] steps``).

        :param int steps: the total number of steps to reach.
        :returns: ``"completed"``, or ``"interrupted"`` when a signal or a ``KeyboardInterrupt``
            from a callback stopped it (a checkpoint is then written).
        :rtype: str
        :raises NonFiniteLossError: when training diverges (see :meth:`step`), or its subclass
            :class:`~pyro_hfvae.training.trainer.ExplodingLossError` when the loss explodes while
            staying finite.
        :raises ValueError: if ``steps`` is below the steps already done.
        """
        target = self.config["training"]["steps"] if steps is None else steps
        if target < self.step_count:
            raise ValueError(f"expected a number of steps >= {self.step_count} (the steps already done) but got "
                             f"{target}")
        log_file = None
        progress_bar = None
        status = "completed"
        self._session_started = time.perf_counter()
        self._stop_requested = self._stop_agreed = False
        try:
            with _StopRequests() as stop:
                self._signals = stop
                if self._writes:
                    log_file = open(self.run_dir / LOG_FILE, "a", encoding="utf-8")
                if self.progress and self._is_main:
                    from tqdm.auto import tqdm

                    progress_bar = tqdm(total=target, initial=self.step_count, desc="training", unit="step",
                                        dynamic_ncols=True)
                while self.step_count < target:
                    try:
                        self._train_step(target, log_file, progress_bar)
                    except NonFiniteLossError as error:
                        failed_step = self.step_count + 1 if self._in_step else self.step_count
                        diagnosis = _diverged(error, failed_step, self._last_checkpoint,
                                              updated=failed_step > 1, objective=self.config["objective"])
                        self._in_step = False
                        self._append_event(log_file, "diverged", str(diagnosis), step=failed_step,
                                           cause="exploding" if isinstance(error, ExplodingLossError) else "non-finite",
                                           last_checkpoint=self._checkpointed_step())
                        raise diagnosis from None
                    # In a data-parallel run every rank stops at the step the ranks agreed on.
                    if stop.received is not None if self._parallel is None else self._stop_agreed:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            if self._in_step:
                # Stopped inside a step: its state is not consistent, keep the last checkpoint.
                self._in_step = False
                logger.warning("stopped during step %d; the last checkpoint stands", self.step_count + 1)
                raise
            status = "interrupted"
            self._append_event(log_file, "interrupted", f"stopped after step {self.step_count}")
        finally:
            if progress_bar is not None:
                progress_bar.close()
            if log_file is not None:
                log_file.close()
            self.train_seconds = self.elapsed_seconds()
            self._session_started = None
            self._signals = None
            if self._parallel is not None:
                logger.info("rank %d of %d: %.2f s of %.2f s training in collectives (gradients %.2f s, status "
                            "%.2f s; waiting for slower ranks included)", self._parallel.rank,
                            self._parallel.world_size,
                            self._parallel.communication_seconds + self.optimizer.communication_seconds,
                            self.train_seconds, self.optimizer.communication_seconds,
                            self._parallel.communication_seconds)
        if self.run_dir is not None and (status == "interrupted" or self.step_count != self._checkpointed_step()):
            self.save_checkpoint()
        if status == "interrupted":
            logger.warning("training interrupted after step %d; continue with: pyro-hfvae train --resume %s",
                           self.step_count, self.run_dir)
        return status

    def elapsed_seconds(self) -> float:
        """
        Seconds spent in :meth:`train` over all sessions of the run (evaluation included).

        :rtype: float
        """
        session = 0.0 if self._session_started is None else time.perf_counter() - self._session_started
        return self.train_seconds + session

    def _train_step(self, target: int, log_file, progress_bar) -> None:
        """One step of :meth:`train` with its logging, callbacks, checkpoint and evaluation."""
        training = self.config["training"]
        record = self.step()
        step = self.step_count
        if log_file is not None and (step % training["log_every"] == 0 or step == target):
            _append_record(log_file, {**record, "seconds": self.elapsed_seconds()})
        self._explosion.observe(step, record["loss"])
        if step == target and self._explosion.suspect:
            # A run does not end (nor write its final checkpoint) while its loss is exploding.
            raise self._explosion.error()
        if progress_bar is not None:
            progress_bar.update(1)
            if step % training["log_every"] == 0 or step == target:
                progress_bar.set_postfix(self._postfix(record), refresh=False)
        if self.information_flow is not None and self.schedule.completed_stage is not None and self._is_main:
            with self.evaluation_mode():
                self.information_flow(self.schedule)
        for callback in self.callbacks:
            try:
                callback(self, record)
            except KeyboardInterrupt:
                if self._parallel is None:
                    raise
                # A stop request like a signal: the ranks agree on it in the next step and stop after it.
                logger.warning("rank %d: a callback asked to stop after step %d; every rank stops after the next "
                               "step", self._parallel.rank, step)
                self._stop_requested = True
                break
        if self.run_dir is not None and training["checkpoint_every"] and (step % training["checkpoint_every"] == 0
                                                                         or self._checkpoint_due):
            # Postponed while the loss looks like exploding: the last checkpoint must stay a good one.
            self._checkpoint_due = self._explosion.suspect
            if not self._checkpoint_due:
                self.save_checkpoint()
        if training["eval_every"] and step % training["eval_every"] == 0 and step != target and self._is_main:
            self._periodic_evaluation()

    def _checkpointed_step(self) -> int | None:
        return None if self._last_checkpoint is None else self._last_checkpoint[0]

    def _append_event(self, log_file, event: str, message: str, **fields: Any) -> None:
        if log_file is not None:
            _append_record(log_file, {"step": self.step_count, "event": event, "message": message, **fields})

    @staticmethod
    def _postfix(record: Mapping[str, float]) -> dict[str, str]:
        shown = {"loss": record["loss"]}
        shown.update((k, v) for k, v in record.items() if k not in ("step", "loss") and "/" not in k)
        return {k: f"{v:.4g}" for k, v in shown.items()}

    def _periodic_evaluation(self) -> None:
        result = self.evaluate(write=False)
        if self.run_dir is None:
            return
        with open(self.run_dir / EVALUATIONS_FILE, "a", encoding="utf-8") as file:
            _append_record(file, _evaluation_record(result))

    # ------------------------------------------------------------------ evaluation

    def evaluation_preset(self, preset: str | None = None) -> str:
        """
        The evaluation preset in force: ``preset``, else ``[evaluation] preset``, where
        ``"auto"`` means ``"full"`` on a GPU and ``"fast"`` otherwise.

        :param str preset: ``"auto"``, ``"fast"``, ``"full"``, ``"none"`` or ``None``.
        :rtype: str
        """
        preset = preset or self.config["evaluation"]["preset"]
        if preset == "auto":
            return "full" if self.device.type == "cuda" else "fast"
        if preset not in EVALUATION_PRESETS:
            raise ValueError(f"expected a preset in {['auto', *EVALUATION_PRESETS]} but got {preset!r}")
        return preset

    def evaluate(self, preset: str | None = None, *, write: bool = True) -> dict[str, Any]:
        """
        Evaluates the model: the disentanglement metrics of :func:`pyro_hfvae.metrics.evaluate`
        (for data sets with known factors) and the mutual information I(x; z) of every latent
        variable, site and group (:func:`pyro_hfvae.metrics.information.mutual_information`,
        exact aggregate posterior over a fixed random set of training items).

        :param str preset: a key of :data:`EVALUATION_PRESETS` or ``"auto"`` (default: the
            configuration's); ``[evaluation]`` settings other than 0 / empty override it.
        :param bool write: write the result to ``metrics.json`` in the run directory.
        :returns: ``{"step", "preset", "seconds", "metrics": {name: value},
            "information": {"total", "groups", "sites", "variables", "num_data"}}``, and with a
            ``[data] hold_out`` ``"hold_out": {"held_out": ..., "held_in_neighbours": ...}``, each
            ``{"items", "elbo", "reconstruction_error"}``: the held-out factor combinations against
            held-in items that share part of them (see
            :meth:`~pyro_hfvae.datasets.GroundTruthDataset.held_out_neighbour_indices`).
        :rtype: dict
        """
        preset = self.evaluation_preset(preset)
        settings = EVALUATION_PRESETS[preset]
        evaluation = self.config["evaluation"]
        started = time.perf_counter()
        with self.evaluation_mode():
            metrics = _disentanglement_metrics(self.dataset, self.encode, evaluation, settings, preset)
            information = _information_summary(self.posterior, self._information_data(), self.site_groups,
                                               evaluation["seed"])
            hold_out = _hold_out_summary(self.dataset, self.model, self._model_kwargs(), self.device,
                                         evaluation["information_points"] or settings["information_points"],
                                         evaluation["seed"])
        result = {
            "step": self.step_count,
            "preset": preset,
            "seconds": time.perf_counter() - started,
            "metrics": metrics,
            "information": information,
        }
        if hold_out is not None:
            result["hold_out"] = hold_out
        if write and self._writes:
            _write_json(self.run_dir / METRICS_FILE, result)
        return result

    def _information_data(self) -> torch.Tensor:
        """The training items on which I(x; z) is measured (a fixed random choice)."""
        positions = _information_positions(self.config["evaluation"], EVALUATION_PRESETS[self.evaluation_preset()],
                                           self.dataset_size)
        return self.observations(torch.from_numpy(positions).to(self.device))

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """
        Everything needed to continue the run (see :mod:`pyro_hfvae.training.checkpoint`).

        :rtype: dict
        """
        return {
            "step": self.step_count,
            "train_seconds": self.elapsed_seconds(),
            "config": self.config,
            "module": self.model.state_dict(),
            "param_store": param_store_state(self.model),
            "optimizer": self.optimizer.get_state(),
            "schedule": None if self.schedule is None else self.schedule.state_dict(),
            "information_flow": None if self.information_flow is None else self.information_flow.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": capture_rng_state(),
            "last_record": self.last_record,
            "versions": {"torch": str(torch.__version__), "pyro": str(pyro.__version__)},
        }

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        """
        Writes a checkpoint atomically (after checking that every parameter is finite).

        In a data-parallel run every rank must call it at the same step: it gathers every rank's
        random generator states (``rng_ranks``, with ``world_size``) and rank 0 writes them.

        :param path: where (default: ``checkpoint.pt`` in the run directory).
        :returns: the path written.
        :rtype: pathlib.Path
        """
        if path is None:
            if self.run_dir is None:
                raise ValueError("expected a path or a trainer with a run directory but got neither")
            path = self.run_dir / CHECKPOINT_FILE
        _check_checkpoint_parameters()
        state = self.state_dict()
        if self._parallel is not None:
            state["world_size"] = self._parallel.world_size
            state["rng_ranks"] = self._parallel.gather(state["rng"])
            if self._parallel.rank != 0:
                self._last_checkpoint = (self.step_count, Path(path))
                return Path(path)
        path = save_checkpoint(path, state)
        self._last_checkpoint = (self.step_count, Path(path))
        logger.debug("checkpoint at step %d written to %s", self.step_count, path)
        return Path(path)

    def load_state_dict(self, state: Mapping[str, Any], lr: float | None = None) -> None:
        """
        Restores :meth:`state_dict`'s result (a checkpoint).

        :param dict state: the saved state.
        :param float lr: a new learning rate for the restored optimiser state (``None``: keep).
        """
        self.model.load_state_dict(state["module"])
        pyro.clear_param_store()
        pyro.get_param_store().set_state(state["param_store"])
        optimizer_state = state["optimizer"]
        if lr is not None:
            for saved in optimizer_state.values():
                for group in saved.get("param_groups", []):
                    group["lr"] = lr
        self.optimizer.set_state(optimizer_state)
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
        if self.information_flow is not None and state.get("information_flow") is not None:
            self.information_flow.load_state_dict(state["information_flow"])
        self.sampler.load_state_dict(state["sampler"])
        rank_states = state.get("rng_ranks")
        rank, world_size = (0, 1) if self._parallel is None else (self._parallel.rank, self._parallel.world_size)
        restore_rng_state(rank_states[rank] if rank_states and len(rank_states) == world_size else state["rng"])
        self.step_count = int(state["step"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.last_record = dict(state.get("last_record", {}))

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, overrides: Mapping[str, Any] | Sequence[str] = (), *,
                 progress: bool = False, callbacks: Sequence[Callable[["Trainer", dict], None]] = (),
                 read_only: bool = False) -> "Trainer":
        """
        Loads a run directory's configuration and checkpoint, to continue training
        (:meth:`train`) or to evaluate and plot. Records of ``log.jsonl`` and
        ``evaluations.jsonl`` after the checkpoint's step are dropped, since the continued
        run repeats those steps.

        :param run_dir: the run directory.
        :param overrides: settings to change (``"section.key": value`` or ``"section.key=value"``);
            only ``training.steps``, the logging, checkpoint and evaluation intervals, the
            device, the number of threads, ``optimizer.lr`` and ``[evaluation]`` may change.
        :param bool progress: show a progress bar.
        :param callbacks: see :class:`Trainer`.
        :param bool read_only: leave ``config.toml`` and the logs as they are (to evaluate or
            plot a run without continuing it); the overrides then apply only in memory.
        :rtype: Trainer
        :raises FileNotFoundError: if ``run_dir`` is not a run directory (no ``config.toml`` or
            no ``checkpoint.pt``).
        :raises ConfigError: if an override changes a setting that defines the run, or sets
            ``training.steps`` below the checkpoint's step (nothing is written then).
        :raises ValueError: if the checkpoint cannot be read, or was written by another
            configuration than ``config.toml``'s.
        """
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"expected a run directory (written by pyro-hfvae train --out) but {run_dir} "
                                    f"{'is a file' if run_dir.exists() else 'does not exist'}")
        for name in (CONFIG_FILE, CHECKPOINT_FILE):
            if not (run_dir / name).is_file():
                raise FileNotFoundError(f"expected a run directory with {CONFIG_FILE} and {CHECKPOINT_FILE} but "
                                        f"{run_dir} has no {name}, so it is not a run directory; pass the directory "
                                        "given to pyro-hfvae train --out (or train first with --out DIR)")
        original = load_config(run_dir / CONFIG_FILE, earlier_defaults(run_dir / CONFIG_FILE))
        config = resolve_config(original, overrides)
        changed = _changed_settings(original, config)
        _check_resumable(changed, run_dir)
        trainer = cls.__new__(cls)
        trainer._build(config, run_dir, progress, callbacks)
        state = load_checkpoint(run_dir / CHECKPOINT_FILE, map_location=trainer.device)
        saved = state.get("config")
        if isinstance(saved, Mapping):
            # Settings both name (a newer library may add keys): those that define the run must agree.
            edited = [f"{section}.{key}" for section, options in original.items()
                      if isinstance(saved.get(section), Mapping) for key in options
                      if key in saved[section] and saved[section][key] != options[key]]
            fixed = _fixed_settings(edited)
            if fixed:
                raise ValueError(f"expected {run_dir / CONFIG_FILE} to describe the run of its {CHECKPOINT_FILE} but "
                                 f"{', '.join(sorted(fixed))} differ; undo the edit of {CONFIG_FILE}, or start a new "
                                 "run with --out") from None
        step = int(state["step"])
        saved_world = int(state.get("world_size", 1))
        world_size = 1 if trainer._parallel is None else trainer._parallel.world_size
        if not read_only and saved_world != world_size:
            raise ValueError(f"expected to continue {run_dir} with {saved_world} process(es), as it was trained (each "
                             f"has its own random streams), but got {world_size}; launch "
                             + (f"torchrun --nproc_per_node={saved_world} -m pyro_hfvae.training train --resume "
                                f"{run_dir}" if saved_world > 1 else f"pyro-hfvae train --resume {run_dir}"))
        if not read_only and config["training"]["steps"] < step:
            raise ConfigError(f"expected [training] steps >= {step} (the run is at step {step}) but got "
                              f"{config['training']['steps']}; pass --steps N with N >= {step} to train on, or use "
                              f"pyro-hfvae evaluate {run_dir} to evaluate the run as it is")
        new_lr = config["optimizer"]["lr"] if "optimizer.lr" in changed else None
        trainer.load_state_dict(state, lr=new_lr)
        trainer._last_checkpoint = (trainer.step_count, run_dir / CHECKPOINT_FILE)
        if read_only or not trainer._writes:
            return trainer
        # This process now owns the run directory: the temporaries of writes a killed process left are garbage.
        remove_atomic_temporaries(run_dir)
        for name in (LOG_FILE, EVALUATIONS_FILE):
            _keep_records_through(run_dir / name, trainer.step_count)
        if changed:
            trainer._write_config()
        return trainer

