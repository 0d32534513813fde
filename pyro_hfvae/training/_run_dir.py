# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The run directory of a :class:`~pyro_hfvae.training.trainer.Trainer`, whose files
:mod:`pyro_hfvae.training.trainer` names: whether a directory can take a new run or holds one to
continue, readying it for either (nothing of an earlier run, of steps to be repeated or of an
interrupted write is left in it), and writing the run's configuration (private: used by
:class:`~pyro_hfvae.training.trainer.Trainer`).
"""
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pyro_hfvae.training._run_log import _keep_records_through
from pyro_hfvae.training.config import dumps_config
from pyro_hfvae.util import atomic_file, remove_atomic_temporaries


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


def _check_new_run_dir(run_dir: Path, checkpoint_file: str, overwrite: bool) -> None:
    """
    Raises an ``OSError`` with the fix if ``run_dir`` cannot take a new run: it cannot hold one
    (:func:`_check_run_dir_writable`), or it holds one already and ``overwrite`` is false.

    :param pathlib.Path run_dir: the run directory.
    :param str checkpoint_file: the name of a run's checkpoint, whose presence marks a run.
    :param bool overwrite: allow a ``run_dir`` that holds a run (it is started anew).
    """
    _check_run_dir_writable(run_dir)
    if not overwrite and (run_dir / checkpoint_file).exists():
        raise FileExistsError(f"expected a new run directory but {run_dir} already holds a run "
                              f"({checkpoint_file}); continue it with Trainer.from_run (pyro-hfvae train "
                              f"--resume {run_dir}) or choose another directory")


def _create_run_dir(run_dir: Path, run_files: Sequence[str]) -> None:
    """
    Creates ``run_dir`` (and the folders above it) for a new run, without the files of an
    earlier run or the temporaries of an interrupted write.

    :param pathlib.Path run_dir: the run directory.
    :param run_files: the names of the files a run writes, removed if there.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"could not create the run directory {run_dir} ({error.strerror}); "
                                   "choose another --out") from None
    remove_atomic_temporaries(run_dir)
    for name in run_files:
        (run_dir / name).unlink(missing_ok=True)


def _write_config(run_dir: Path, config_file: str, config: Mapping[str, Mapping[str, Any]]) -> None:
    """
    Writes a run's resolved configuration to its ``config_file`` atomically, headed by how to
    continue the run.

    :param pathlib.Path run_dir: the run directory.
    :param str config_file: the name of a run's configuration file.
    :param dict config: the resolved configuration.
    """
    header = ("pyro-hfvae run configuration, as resolved (every default listed).\n"
              f"Continue the run with: pyro-hfvae train --resume {run_dir}")
    with atomic_file(run_dir / config_file, "w") as file:
        file.write(dumps_config(config, header=header))


def _check_run_dir(run_dir: Path, config_file: str, checkpoint_file: str) -> None:
    """
    Raises a ``FileNotFoundError`` with the fix unless ``run_dir`` holds a run: its
    configuration and its checkpoint.

    :param pathlib.Path run_dir: the run directory.
    :param str config_file: the name of a run's configuration file.
    :param str checkpoint_file: the name of a run's checkpoint.
    """
    if not run_dir.is_dir():
        raise FileNotFoundError(f"expected a run directory (written by pyro-hfvae train --out) but {run_dir} "
                                f"{'is a file' if run_dir.exists() else 'does not exist'}")
    for name in (config_file, checkpoint_file):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"expected a run directory with {config_file} and {checkpoint_file} but "
                                    f"{run_dir} has no {name}, so it is not a run directory; pass the directory "
                                    "given to pyro-hfvae train --out (or train first with --out DIR)")


def _trim_run_dir(run_dir: Path, logs: Sequence[str], step: int) -> None:
    """
    Readies ``run_dir`` for its run to continue from the checkpoint of ``step``, in a process
    that now owns it: without the temporaries of writes that a killed process left, or the
    records of its ``logs`` after ``step``, which the continued run repeats.

    :param pathlib.Path run_dir: the run directory.
    :param logs: the names of its JSON-lines logs.
    :param int step: the step of the checkpoint the run continues from.
    """
    remove_atomic_temporaries(run_dir)
    for name in logs:
        _keep_records_through(run_dir / name, step)
