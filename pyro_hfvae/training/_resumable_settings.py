# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The settings a resumed run may change: the length of the run, its intervals, its device and
threads, the learning rate and ``[evaluation]``; the rest define the run, and must agree with
those its checkpoint was written with, as must the number of processes (private: used by
:meth:`Trainer.from_run <pyro_hfvae.training.trainer.Trainer.from_run>`).
"""
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyro_hfvae.training.config import ConfigError

# Settings that may change when a run is resumed (the rest define the run).
_RESUMABLE = {"training.steps", "training.log_every", "training.checkpoint_every", "training.eval_every",
              "training.device", "training.num_threads", "training.retain_freed_memory", "optimizer.lr"}


def _changed_settings(original: Mapping[str, Mapping[str, Any]], config: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """
    The ``section.key`` of every setting of ``config`` that differs from ``original``'s, then
    of every setting of ``original`` that ``config`` lacks.

    Example::

        >>> _changed_settings({"training": {"steps": 5, "seed": 0}}, {"training": {"steps": 8}})
        ['training.steps', 'training.seed']
    """
    changed = [f"{section}.{key}" for section, options in config.items() for key in options
               if options[key] != original[section].get(key)]
    changed += [f"{section}.{key}" for section, options in original.items() for key in options
                if key not in config[section]]
    return changed


def _fixed_settings(changed: list[str]) -> list[str]:
    """The settings of ``changed`` (``section.key``) that define a run and so may not change when it is resumed."""
    return [key for key in changed if key not in _RESUMABLE and not key.startswith("evaluation.")]


def _check_resumable(changed: list[str], run_dir: str | os.PathLike) -> None:
    """
    Raises a :class:`~pyro_hfvae.training.config.ConfigError` if a ``changed`` setting
    defines the run ``run_dir``.
    """
    fixed = _fixed_settings(changed)
    if fixed:
        raise ConfigError(f"cannot change {', '.join(sorted(fixed))} when resuming {run_dir}: they define the run; "
                          f"start a new run with --out, or change only {', '.join(sorted(_RESUMABLE))} and "
                          "[evaluation] settings")


def _check_saved_settings(original: Mapping[str, Mapping[str, Any]], saved: Any, run_dir: Path, config_file: str,
                          checkpoint_file: str) -> None:
    """
    Raises a ``ValueError`` if a setting that defines the run ``run_dir`` differs between its
    configuration file and its checkpoint's configuration.

    :param dict original: the settings of ``run_dir``'s ``config_file``.
    :param saved: the configuration saved in its ``checkpoint_file`` (not checked unless a mapping).
    :param pathlib.Path run_dir: the run directory.
    :param str config_file: the name of its configuration file.
    :param str checkpoint_file: the name of its checkpoint.
    """
    if isinstance(saved, Mapping):
        # Settings both name (a newer library may add keys): those that define the run must agree.
        edited = [f"{section}.{key}" for section, options in original.items()
                  if isinstance(saved.get(section), Mapping) for key in options
                  if key in saved[section] and saved[section][key] != options[key]]
        fixed = _fixed_settings(edited)
        if fixed:
            raise ValueError(f"expected {run_dir / config_file} to describe the run of its {checkpoint_file} but "
                             f"{', '.join(sorted(fixed))} differ; undo the edit of {config_file}, or start a new "
                             "run with --out") from None


def _check_continuable(run_dir: str | os.PathLike, steps: int, step: int, saved_world: int, world_size: int) -> None:
    """
    Raises if the run ``run_dir`` cannot continue: in another number of processes than it was
    trained with (each has its own random streams; a ``ValueError``), or to fewer ``[training]
    steps`` than it has done (a :class:`~pyro_hfvae.training.config.ConfigError`).

    :param run_dir: the run directory.
    :param int steps: the ``[training] steps`` to continue to.
    :param int step: the step of its checkpoint.
    :param int saved_world: the number of processes the run was trained with.
    :param int world_size: the number of processes that would continue it.
    """
    if saved_world != world_size:
        raise ValueError(f"expected to continue {run_dir} with {saved_world} process(es), as it was trained (each "
                         f"has its own random streams), but got {world_size}; launch "
                         + (f"torchrun --nproc_per_node={saved_world} -m pyro_hfvae.training train --resume "
                            f"{run_dir}" if saved_world > 1 else f"pyro-hfvae train --resume {run_dir}"))
    if steps < step:
        raise ConfigError(f"expected [training] steps >= {step} (the run is at step {step}) but got "
                          f"{steps}; pass --steps N with N >= {step} to train on, or use "
                          f"pyro-hfvae evaluate {run_dir} to evaluate the run as it is")
