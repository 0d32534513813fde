# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Building a run's components (data set, model, schedule, objective, optimiser) from the
sections of its resolved configuration (:mod:`pyro_hfvae.training.config`); a component that rejects
its options raises a :class:`~pyro_hfvae.training.config.ConfigError` naming the section (private:
used by :class:`~pyro_hfvae.training.trainer.Trainer`).
"""
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from pyro_hfvae.training.config import ConfigError, component_factory
from pyro_hfvae.training.grouped_optim import GroupedOptim

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


def _build_model(model: Mapping[str, Any], image_shape: Sequence[int], device: torch.device) -> torch.nn.Module:
    """The ``[model]`` model for observations of ``image_shape``, on ``device``."""
    options = dict(model)
    return _construct("model", options.pop("name"), options, image_shape=tuple(image_shape)).to(device)


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
    if "global_batch" in options:
        options["global_batch"] = bool(options["global_batch"]) and distributed
    if schedule is not None:
        options["betas"] = schedule
    if options.pop("compile", False):  # [objective] compile = true: the compiled HFVAE loss
        from pyro_hfvae.infer.jit import JitHFVAELoss

        return _construct("objective", name, options, factory=JitHFVAELoss)
    return _construct("objective", name, options)


def _build_optimizer(optimizer: Mapping[str, Any]) -> GroupedOptim:
    """The ``[optimizer]`` optimiser: the ``pyro.optim`` one it names, its parameters stepped together."""
    options = dict(optimizer)
    name = options.pop("name")
    return GroupedOptim.from_pyro_optim(component_factory("optimizer", name)({k: _to_constructor(v)
                                                                             for k, v in options.items()}))
