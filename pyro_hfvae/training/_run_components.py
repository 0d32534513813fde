# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Building a run's components (data set, model, schedule, objective, optimiser) from the
sections of its resolved configuration (:mod:`pyro_hfvae.training.config`), with what the trainer
reads of them: the training items, the labels a semi-supervised model learns from, the groups of
the latent sites, and the model's keyword arguments for a batch. A component that rejects its
options raises a :class:`~pyro_hfvae.training.config.ConfigError` naming the section (private:
used by :class:`~pyro_hfvae.training.trainer.Trainer`).
"""
import inspect
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch

from pyro_hfvae.infer.inference_data import latent_groups
from pyro_hfvae.training._divergence import _first_line
from pyro_hfvae.training._random_batches import _RandomBatches
from pyro_hfvae.training.config import ConfigError, component_factory
from pyro_hfvae.training.distributed import DistributedOptimizer, _rank_seed
from pyro_hfvae.training.grouped_optim import GroupedOptim

if TYPE_CHECKING:
    from pyro_hfvae.training.trainer import Trainer

logger = logging.getLogger(__name__)


def _to_constructor(value: Any) -> Any:
    # TOML arrays arrive as lists; constructors take tuples.
    return tuple(_to_constructor(v) for v in value) if isinstance(value, list) else value


def _construct(section: str, name: str, options: Mapping[str, Any], *, factory: Any = None, **fixed) -> Any:
    """
    The ``[section]`` component ``name`` (or ``factory``, a variant of it) built with ``options``
    and the arguments ``fixed`` by the trainer.
    """
    factory = component_factory(section, name) if factory is None else factory
    try:
        return factory(**{k: _to_constructor(v) for k, v in options.items()}, **fixed)
    except (ValueError, TypeError, RuntimeError, IndexError, OSError) as error:
        raise ConfigError(f"[{section}] {name}: {error}") from error


def _build_dataset(data: Mapping[str, Any], device: torch.device):
    """The ``[data]`` data set, reading its observations on ``device``."""
    options = {k: v for k, v in data.items() if k not in ("name", "subset", "hold_out")}
    name = data["name"]
    if name == "mnist" and options.get("root") == "":
        # stacklevel 3: the Trainer call that builds the run.
        warnings.warn("[data] mnist has no root folder: scikit-learn's 8x8 digits stand in for MNIST; set "
                      "[data] root to the folder with the MNIST IDX files", UserWarning, stacklevel=3)
        return _construct("data", "digits", {"binarize": options.get("binarize", False)}, device=device)
    return _construct("data", name, options, device=device)


def _hold_out(dataset, data: Mapping[str, Any]) -> np.ndarray | None:
    """Sets the ``[data] hold_out`` on the data set; its held-in indices (``None``: nothing held out)."""
    hold_out = data.get("hold_out", {})
    if not hold_out:
        return None
    if not hasattr(dataset, "held_in_indices"):
        raise ConfigError(f"expected a data set with factors of variation for [data] hold_out but "
                          f"{data['name']} has none; remove hold_out")
    try:
        dataset.hold_out = hold_out
    except (ValueError, TypeError) as error:
        raise ConfigError(f"[data] hold_out: {error}") from error
    return dataset.held_in_indices()


def _training_indices(dataset, data: Mapping[str, Any], seed: int, device: torch.device) -> torch.Tensor | None:
    """
    Data-set indices of the training items on ``device`` (``None``: all of them): the items that
    ``[data] hold_out`` leaves in (it is set on ``dataset``), of which ``[data] subset`` (a fixed
    random choice drawn from ``seed``).
    """
    held_in = _hold_out(dataset, data)
    available = len(dataset) if held_in is None else len(held_in)
    subset = data.get("subset", 0)
    if subset > available:
        what = "the size of" if held_in is None else "the held-in items of"
        raise ConfigError(f"expected [data] subset <= {available} ({what} {data['name']}) but got "
                          f"{subset}; use 0 for the whole data set")
    if subset and subset < available:
        chosen = np.sort(np.random.RandomState(seed).choice(available, subset, replace=False))
        return torch.from_numpy(chosen if held_in is None else held_in[chosen]).to(device)
    if held_in is not None:
        return torch.from_numpy(held_in).to(device)
    return None


def _build_model(model: Mapping[str, Any], image_shape: Sequence[int], device: torch.device) -> torch.nn.Module:
    """The ``[model]`` model for observations of ``image_shape``, on ``device``."""
    options = dict(model)
    return _construct("model", options.pop("name"), options, image_shape=tuple(image_shape)).to(device)


def _labels(model: torch.nn.Module, dataset, config: Mapping[str, Mapping[str, Any]], dataset_size: int,
            device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """
    The labels of the data set's items on ``device`` if the model learns from them (its ``model``
    takes ``labels``: a semi-supervised model; else ``None``), and which of the ``dataset_size``
    training positions have known labels (a model with ``label_unit="item"``; else ``None``).
    """
    if "labels" not in inspect.signature(model.model).parameters:
        return None, None
    if not hasattr(dataset, "labels"):
        raise ConfigError(f"[model] {config['model']['name']} learns from labels but [data] "
                          f"{config['data']['name']} has none; use a labelled data set (digits, mnist, fashion_mnist)")
    labels = torch.as_tensor(dataset.labels, device=device)
    if getattr(model, "label_unit", "batch") != "item":
        return labels, None
    return labels, model.labelled_items(dataset_size, config["training"]["seed"]).to(device)


def _model_kwargs(trainer: "Trainer", positions: torch.Tensor | None = None) -> dict[str, Any]:
    """
    The keyword arguments of the trainer's model and guide besides the batch: the schedule, if
    the model takes one, and for a semi-supervised model the labels of the training items at
    ``positions`` with the mask of those known.

    :param Trainer trainer: the trainer.
    :param torch.Tensor positions: the batch's positions in the training set (``None``: no labels).
    :rtype: dict
    """
    kwargs = {"schedule": trainer.schedule} if trainer._takes_schedule and trainer.schedule is not None else {}
    if trainer._labels is not None and positions is not None:
        # A semi-supervised model: the batch's labels, known for the fixed labelled items, or all known or none
        # (the batch's place in the epoch decides).
        labels = trainer._labels[positions if trainer.train_indices is None else trainer.train_indices[positions]]
        if trainer._labelled_items is not None:
            label_mask = trainer._labelled_items[positions]
        else:
            labelled = trainer.model.labelled_batch(trainer.sampler.position // trainer.sampler.batch_size - 1,
                                                    seed=trainer.config["training"]["seed"])
            label_mask = torch.full_like(labels, labelled, dtype=torch.bool)
        kwargs.update(labels=labels, label_mask=label_mask)
    return kwargs


def _site_groups(model: torch.nn.Module, probe: torch.Tensor, config: Mapping[str, Mapping[str, Any]],
                 observation_shape: Sequence[int]) -> dict[str, str | None]:
    """
    Group path of every latent site of the model's guide (``None``: no group), read from a run
    of the guide on ``probe``, a few observations of the data set (of ``observation_shape``).
    """
    try:
        return latent_groups(model.guide, probe)
    except (ValueError, RuntimeError, TypeError, IndexError) as error:
        raise ConfigError(f"[model] {config['model']['name']}: expected a model that reads the observations "
                          f"of {config['data']['name']} (shape {tuple(observation_shape)}) but its guide "
                          f"failed: {_first_line(error)}; check the [model] settings") from None


def _build_schedule(schedule: Mapping[str, Any], levels: Sequence[str]):
    """The ``[schedule]`` progressive schedule over the latent sites ``levels``, or ``None``."""
    if schedule["name"] == "none":
        return None
    options = {k: v for k, v in schedule.items() if k != "name"}
    return _construct("schedule", schedule["name"], options, levels=list(levels))


def _build_objective(objective: Mapping[str, Any], schedule, distributed: bool = False):
    """
    The ``[objective]`` objective, its per-site betas given by ``schedule`` where there is one.
    ``global_batch`` (HFVAE's aggregate-posterior marginals over the global batch) applies only
    to a data-parallel run (``distributed``): a single process's batch is the global batch.
    """
    options = dict(objective)
    name = options.pop("name")
    options.pop("warmup_steps", None)  # the warm-up's own objective: _build_warmup
    options.pop("warmup_betas", None)
    if "global_batch" in options:
        options["global_batch"] = bool(options["global_batch"]) and distributed
    if schedule is not None:
        options["betas"] = schedule
    if options.pop("compile", False):  # [objective] compile = true: the compiled HFVAE loss
        from pyro_hfvae.infer.jit import JitHFVAELoss

        return _construct("objective", name, options, factory=JitHFVAELoss)
    return _construct("objective", name, options)


def _build_warmup(objective: Mapping[str, Any]):
    """
    The objective of the ``[objective] warmup_steps`` first steps: HITLoss with the rates weighted
    by ``warmup_betas`` (others by 1), Concrete sites scored as the objective scores them; ``None``
    without a warm-up.
    """
    if objective.get("warmup_steps", 0) == 0:
        return None
    options = {"betas": dict(objective["warmup_betas"]), "concrete_scoring": objective["concrete_scoring"]}
    options.update((key, objective[key]) for key in ("num_particles", "vectorize_particles", "data_plate")
                   if key in objective)
    try:
        return component_factory("objective", "hit")(**options)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"[objective] warmup_betas: {error}") from error


def _build_optimizer(optimizer: Mapping[str, Any]) -> GroupedOptim:
    """The ``[optimizer]`` optimiser: the ``pyro.optim`` one it names, its parameters stepped together."""
    options = dict(optimizer)
    name = options.pop("name")
    return GroupedOptim.from_pyro_optim(component_factory("optimizer", name)({k: _to_constructor(v)
                                                                             for k, v in options.items()}))


def _build_components(trainer: "Trainer") -> None:
    """
    Builds the components of ``trainer``'s run from its resolved configuration, on its device:
    the data set and its training items, the batch order, the model with the labels it learns
    from and the groups of its latent sites, the schedule, the objective, the optimiser (rank 0's
    parameters for every rank of a data-parallel run, each with its own random stream) and the
    information flow of a progressive run.

    :param Trainer trainer: the trainer, with its configuration, device and data-parallel context.
    """
    config, device, parallel = trainer.config, trainer.device, trainer._parallel
    data, training = config["data"], config["training"]
    # The data set (its observations are read on the trainer's device).
    trainer.dataset = _build_dataset(data, device)
    # Data-set indices of the training items (``None``: all of them).
    trainer.train_indices = _training_indices(trainer.dataset, data, training["seed"], device)
    # The number of training items ``N`` (the data plate's size).
    trainer.dataset_size = len(trainer.train_indices) if trainer.train_indices is not None else len(trainer.dataset)
    # First, since it checks the batch size against the data set's.
    trainer.sampler = _RandomBatches(trainer.dataset_size, training["batch_size"], training["seed"], device)
    # This rank's rows of every global batch (all of them in a single process).
    trainer._rows = slice(None) if parallel is None else parallel.rows(training["batch_size"])

    # The model: an ``nn.Module`` with Pyro ``model`` and ``guide`` methods.
    trainer.model = _build_model(config["model"], trainer.dataset.observation_shape, device)
    trainer._takes_schedule = "schedule" in inspect.signature(trainer.model.model).parameters
    # The labels a semi-supervised model learns from, and which training positions have them (label_unit="item").
    trainer._labels, trainer._labelled_items = _labels(trainer.model, trainer.dataset, config, trainer.dataset_size,
                                                       device)
    # Group path of every latent site of the guide (``None``: no group).
    trainer.site_groups = _site_groups(trainer.model, trainer.observations(torch.arange(2, device=device)), config,
                                       trainer.dataset.observation_shape)
    # The progressive schedule, or ``None``.
    trainer.schedule = _build_schedule(config["schedule"], trainer.site_groups)
    # The objective (a TermsELBO).
    trainer.loss = _build_objective(config["objective"], trainer.schedule, distributed=parallel is not None)
    # The objective of the first ``warmup_steps`` steps, or ``None``.
    trainer.warmup_loss = _build_warmup(config["objective"])
    # The Pyro optimiser (a DistributedOptimizer in a data-parallel run).
    trainer.optimizer = _build_optimizer(config["optimizer"])
    if parallel is not None:
        trainer.optimizer = DistributedOptimizer(trainer.optimizer)
        parallel.broadcast_module(trainer.model)
        # Every rank draws its own latent samples: rank 0 from the seed, as a single process does.
        pyro.set_rng_seed(_rank_seed(training["seed"], parallel.rank))
    trainer.information_flow = None
    if trainer.schedule is not None:
        from pyro_hfvae.metrics.information_flow import InformationFlow

        # Per-stage I(x; z_l) of a progressive run.
        trainer.information_flow = InformationFlow(trainer.posterior, trainer._information_data(),
                                                   random_state=config["evaluation"]["seed"])
