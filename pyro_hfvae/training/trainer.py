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
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_hfvae.infer.inference_data import latent_means, latent_posterior
from pyro_hfvae.training._device import _pick_device
from pyro_hfvae.training._divergence import ExplodingLossError
from pyro_hfvae.training._resumable_settings import (
    _changed_settings,
    _check_continuable,
    _check_resumable,
    _check_saved_settings,
)
from pyro_hfvae.training._run_components import _build_components
from pyro_hfvae.training._run_dir import (
    _check_new_run_dir,
    _check_run_dir,
    _create_run_dir,
    _trim_run_dir,
    _write_config,
)
from pyro_hfvae.training._run_evaluation import _evaluation, _evaluation_record, _information_positions
from pyro_hfvae.training._run_log import _append_record, _write_json, read_jsonl
from pyro_hfvae.training._training_loop import _init_loop_state, _step, _train_session
from pyro_hfvae.training.allocator import retain_freed_memory
from pyro_hfvae.training.checkpoint import _restore_run_state, _run_state, _save_run_state, load_checkpoint
from pyro_hfvae.training.config import earlier_defaults, load_config, resolve_config
from pyro_hfvae.training.distributed import _data_parallel
from pyro_hfvae.util import forked_rng

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

    With ``[objective] warmup_steps = W`` (HFVAE objective) the first ``W`` steps train with
    :class:`~pyro_hfvae.HITLoss`, each latent site's rate weighted by ``[objective]
    warmup_betas`` (a table of site or group names, e.g. ``{style = 64.0}``; 1 for the sites it
    does not name) and Concrete sites scored as the HFVAE loss scores them; the HFVAE loss takes
    over at step ``W + 1`` with the same optimiser state. A costly style first leaves the digit
    to the Concrete class group on MNIST (see :doc:`/mnist_results`).

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
            _check_new_run_dir(run_dir, CHECKPOINT_FILE, overwrite)
        # Everything is checked (configuration, data set, model) before the run directory is created.
        self._build(config, run_dir, progress, callbacks)
        if self._writes:
            _create_run_dir(self.run_dir, (LOG_FILE, EVALUATIONS_FILE, METRICS_FILE, CHECKPOINT_FILE))
            _write_config(self.run_dir, CONFIG_FILE, self.config)

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
        _build_components(self)
        #: Training steps done.
        self.step_count = 0
        #: The record (``step``, ``loss``, terms) of the last step.
        self.last_record: dict[str, float] = {}
        #: Seconds spent in :meth:`train` by the sessions before the current one.
        self.train_seconds = 0.0
        self._session_started: float | None = None
        self._last_checkpoint: tuple[int, Path] | None = None
        _init_loop_state(self)

    @property
    def _is_main(self) -> bool:
        """Whether this process is rank 0 of a data-parallel run, or the only process."""
        return self._parallel is None or self._parallel.rank == 0

    @property
    def _writes(self) -> bool:
        """Whether this process writes the run directory: it has one and is rank 0 (or the only process)."""
        return self.run_dir is not None and self._is_main

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
        return _step(self)

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
        status = _train_session(self, target, self.run_dir / LOG_FILE if self._writes else None)
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

    def _checkpointed_step(self) -> int | None:
        return None if self._last_checkpoint is None else self._last_checkpoint[0]

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
        result = _evaluation(self, preset, EVALUATION_PRESETS[preset])
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
        return _run_state(self)

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
        if _save_run_state(self, path):
            logger.debug("checkpoint at step %d written to %s", self.step_count, path)
        self._last_checkpoint = (self.step_count, Path(path))
        return Path(path)

    def load_state_dict(self, state: Mapping[str, Any], lr: float | None = None) -> None:
        """
        Restores :meth:`state_dict`'s result (a checkpoint).

        :param dict state: the saved state.
        :param float lr: a new learning rate for the restored optimiser state (``None``: keep).
        """
        _restore_run_state(self, state, lr)

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
        _check_run_dir(run_dir, CONFIG_FILE, CHECKPOINT_FILE)
        original = load_config(run_dir / CONFIG_FILE, earlier_defaults(run_dir / CONFIG_FILE))
        config = resolve_config(original, overrides)
        changed = _changed_settings(original, config)
        _check_resumable(changed, run_dir)
        trainer = cls.__new__(cls)
        trainer._build(config, run_dir, progress, callbacks)
        state = load_checkpoint(run_dir / CHECKPOINT_FILE, map_location=trainer.device)
        _check_saved_settings(original, state.get("config"), run_dir, CONFIG_FILE, CHECKPOINT_FILE)
        step = int(state["step"])
        saved_world = int(state.get("world_size", 1))
        world_size = 1 if trainer._parallel is None else trainer._parallel.world_size
        if not read_only:
            _check_continuable(run_dir, config["training"]["steps"], step, saved_world, world_size)
        new_lr = config["optimizer"]["lr"] if "optimizer.lr" in changed else None
        trainer.load_state_dict(state, lr=new_lr)
        trainer._last_checkpoint = (trainer.step_count, run_dir / CHECKPOINT_FILE)
        if read_only or not trainer._writes:
            return trainer
        _trim_run_dir(run_dir, (LOG_FILE, EVALUATIONS_FILE), trainer.step_count)
        if changed:
            _write_config(run_dir, CONFIG_FILE, trainer.config)
        return trainer

