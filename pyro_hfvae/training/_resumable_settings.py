# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The settings a resumed run may change: the length of the run, its intervals, its device and
threads, the learning rate and ``[evaluation]``; the rest define the run (private: used by
:meth:`Trainer.from_run <pyro_hfvae.training.trainer.Trainer.from_run>`).
"""
import os
from collections.abc import Mapping
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
