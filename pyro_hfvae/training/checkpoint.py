# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Training checkpoints: everything a run needs to continue exactly where it stopped,
written atomically.

A checkpoint is a dict saved with :func:`torch.save` holding only tensors and plain Python
values, so that :func:`load_checkpoint` reads it with ``weights_only=True`` (no pickled code
runs). It holds the model's ``state_dict``, the Pyro parameters that are not the model's own,
the optimiser state (:meth:`pyro.optim.PyroOptim.get_state`), the schedule state, the step,
the random number generator states (:func:`capture_rng_state`) and the configuration.
"""
import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch

from pyro_hfvae.training._divergence import _check_checkpoint_parameters
from pyro_hfvae.util import atomic_file

if TYPE_CHECKING:
    from pyro_hfvae.training.trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT",
    "capture_rng_state",
    "load_checkpoint",
    "param_store_state",
    "restore_rng_state",
    "save_checkpoint",
]

#: The ``format`` entry of every checkpoint, with its version.
CHECKPOINT_FORMAT = ("pyro_hfvae.checkpoint", 1)


def capture_rng_state() -> dict[str, Any]:
    """
    The states of every global random number generator a Pyro run draws from: torch's CPU
    generator, every CUDA device's, numpy's legacy global generator and Python's ``random``,
    as tensors and plain values.

    :rtype: dict

    Example::

        >>> state = capture_rng_state()
        >>> a = torch.rand(3)
        >>> restore_rng_state(state)
        >>> bool((torch.rand(3) == a).all())
        True
    """
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """
    Restores the generators from :func:`capture_rng_state`'s result. CUDA states are restored
    where saved and CUDA is available (a CPU-only resume of a GPU run cannot replay the GPU's
    random stream; that is logged).

    :param dict state: a dict from :func:`capture_rng_state`.
    """
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    random.setstate(_python_state_from_plain(state["python"]))
    if "cuda" in state:
        if torch.cuda.is_available():
            states = state["cuda"][: torch.cuda.device_count()]
            torch.cuda.set_rng_state_all(states)
        else:
            logger.warning("the checkpoint holds CUDA random states but CUDA is not available; the resumed run "
                           "draws different random numbers than the original would have")


def _python_state_to_plain(state: tuple) -> dict[str, Any]:
    version, internal, gauss_next = state
    return {"version": version, "internal": list(internal), "gauss_next": gauss_next}


def _python_state_from_plain(state: dict[str, Any]) -> tuple:
    return state["version"], tuple(state["internal"]), state["gauss_next"]


def _module_parameter_ids(module: torch.nn.Module | None) -> set[int]:
    return set() if module is None else {id(p) for p in module.parameters()}


def param_store_state(module: torch.nn.Module | None = None) -> dict[str, Any]:
    """
    The Pyro param store's parameters that are not ``module``'s own (those are saved with
    the module's ``state_dict``), in :meth:`~pyro.params.param_store.ParamStoreDict.get_state`'s form.

    :param torch.nn.Module module: the model, whose parameters are left out.
    :rtype: dict
    """
    store = pyro.get_param_store()
    own = _module_parameter_ids(module)
    state = store.get_state()
    names = [name for name, value in store.named_parameters() if id(value) not in own]
    return {"params": {n: state["params"][n] for n in names},
            "constraints": {n: state["constraints"][n] for n in names}}


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """
    Writes ``state`` to ``path`` atomically (:func:`atomic_file`), so that an interrupted
    write never leaves a truncated checkpoint.

    :param path: the checkpoint file.
    :param dict state: tensors and plain Python values (``format`` is added).
    :returns: the path written.
    :rtype: pathlib.Path
    """
    with atomic_file(path) as file:
        torch.save({"format": list(CHECKPOINT_FORMAT), **state}, file)
    return Path(path)


def _constraint_classes() -> list[type]:
    # Pyro parameters carry their constraint objects; allow those classes (and only those) to be unpickled.
    import pyro.distributions.constraints as pyro_constraints
    from torch.distributions import constraints as torch_constraints

    classes = {type(obj) for module in (torch_constraints, pyro_constraints) for obj in vars(module).values()
               if isinstance(obj, torch_constraints.Constraint)}
    classes |= {obj for module in (torch_constraints, pyro_constraints) for obj in vars(module).values()
                if isinstance(obj, type) and issubclass(obj, torch_constraints.Constraint)}
    return sorted(classes, key=lambda cls: (cls.__module__, cls.__qualname__))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """
    Reads a checkpoint written by :func:`save_checkpoint` (with ``weights_only=True``).

    :param path: the checkpoint file.
    :param map_location: where tensors are loaded (default CPU).
    :returns: the saved state.
    :rtype: dict
    :raises FileNotFoundError: if there is no such file.
    :raises ValueError: if the file is not a pyro_hfvae checkpoint of a known version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a checkpoint at {path} but there is no such file")
    try:
        with torch.serialization.safe_globals(_constraint_classes()):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"could not read {path} as a pyro_hfvae checkpoint ({type(error).__name__}: "
                         f"{error})") from None
    saved = tuple(state.get("format", ())) if isinstance(state, dict) else ()
    if saved != CHECKPOINT_FORMAT:
        raise ValueError(f"expected a checkpoint of format {CHECKPOINT_FORMAT} at {path} but got {saved or 'none'}")
    return state


def _run_state(trainer: "Trainer") -> dict[str, Any]:
    """
    A trainer's checkpoint state (see :meth:`Trainer.state_dict
    <pyro_hfvae.training.trainer.Trainer.state_dict>`): its parameters, optimiser, schedule,
    information flow and batch order, the random generators, the step and the configuration.

    :param Trainer trainer: the trainer.
    :rtype: dict
    """
    return {
        "step": trainer.step_count,
        "train_seconds": trainer.elapsed_seconds(),
        "config": trainer.config,
        "module": trainer.model.state_dict(),
        "param_store": param_store_state(trainer.model),
        "optimizer": trainer.optimizer.get_state(),
        "schedule": None if trainer.schedule is None else trainer.schedule.state_dict(),
        "information_flow": None if trainer.information_flow is None else trainer.information_flow.state_dict(),
        "sampler": trainer.sampler.state_dict(),
        "rng": capture_rng_state(),
        "last_record": trainer.last_record,
        "versions": {"torch": str(torch.__version__), "pyro": str(pyro.__version__)},
    }


def _save_run_state(trainer: "Trainer", path: str | os.PathLike) -> bool:
    """
    Writes ``trainer``'s checkpoint state (:func:`_run_state`) to ``path`` with
    :func:`save_checkpoint`, after checking that every parameter is finite. In a data-parallel run
    every rank must call it at the same step: the ranks' random generator states are gathered
    (``rng_ranks``, with ``world_size``) and rank 0 alone writes them.

    :param Trainer trainer: the trainer.
    :param path: the checkpoint file.
    :returns: whether this process wrote the checkpoint.
    :rtype: bool
    """
    _check_checkpoint_parameters()
    state = trainer.state_dict()
    if trainer._parallel is not None:
        state["world_size"] = trainer._parallel.world_size
        state["rng_ranks"] = trainer._parallel.gather(state["rng"])
        if trainer._parallel.rank != 0:
            return False
    save_checkpoint(path, state)
    return True


def _restore_run_state(trainer: "Trainer", state: Mapping[str, Any], lr: float | None = None) -> None:
    """
    Restores :func:`_run_state`'s result into ``trainer`` (see :meth:`Trainer.load_state_dict
    <pyro_hfvae.training.trainer.Trainer.load_state_dict>`); each rank of a data-parallel run takes
    its own random generator states where the checkpoint holds one per rank.

    :param Trainer trainer: the trainer, built from the checkpoint's configuration.
    :param dict state: the saved state.
    :param float lr: a new learning rate for the restored optimiser state (``None``: keep).
    """
    trainer.model.load_state_dict(state["module"])
    pyro.clear_param_store()
    pyro.get_param_store().set_state(state["param_store"])
    optimizer_state = state["optimizer"]
    if lr is not None:
        for saved in optimizer_state.values():
            for group in saved.get("param_groups", []):
                group["lr"] = lr
    trainer.optimizer.set_state(optimizer_state)
    if trainer.schedule is not None:
        trainer.schedule.load_state_dict(state["schedule"])
    if trainer.information_flow is not None and state.get("information_flow") is not None:
        trainer.information_flow.load_state_dict(state["information_flow"])
    trainer.sampler.load_state_dict(state["sampler"])
    rank_states = state.get("rng_ranks")
    rank, world_size = (0, 1) if trainer._parallel is None else (trainer._parallel.rank, trainer._parallel.world_size)
    restore_rng_state(rank_states[rank] if rank_states and len(rank_states) == world_size else state["rng"])
    trainer.step_count = int(state["step"])
    trainer.train_seconds = float(state.get("train_seconds", 0.0))
    trainer.last_record = dict(state.get("last_record", {}))
