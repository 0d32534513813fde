# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Small utilities shared by every layer of the package: atomic file writes and forked random
number generators.
"""
import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "atomic_file",
    "forked_rng",
    "remove_atomic_temporaries",
]

# The temporary files of atomic_file: ".NAME.XXXXXXXX.tmp", XXXXXXXX from tempfile.mkstemp.
_TEMPORARY_PREFIX, _TEMPORARY_SUFFIX = ".", ".tmp"
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """
    Opens a temporary file next to ``path`` for writing; when the block ends without an
    error the file is flushed to disk and renamed over ``path`` (an atomic replacement), else
    it is removed and ``path`` is left as it was.

    :param path: the file to write.
    :param str mode: ``"wb"`` or ``"w"`` (text, UTF-8).
    :rtype: file object

    Example::

        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with atomic_file(os.path.join(folder, "a.txt"), "w") as file:
        ...     _ = file.write("done")
        >>> open(os.path.join(folder, "a.txt")).read()
        'done'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"expected mode 'wb' or 'w' but got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{_TEMPORARY_PREFIX}{path.name}.",
                                         suffix=_TEMPORARY_SUFFIX)
    try:
        # mkstemp makes the file private; give it the permissions open() would have.
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(handle, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remove_atomic_temporaries(folder: str | os.PathLike) -> list[Path]:
    """
    Removes the temporary files that :func:`atomic_file` leaves in ``folder`` when its process is
    killed mid-write (``.NAME.XXXXXXXX.tmp``; nothing else is touched, and subfolders are not
    searched). Call it only on a folder that no other process is writing to.

    :param folder: the folder (nothing happens if it does not exist).
    :returns: the files removed.
    :rtype: list

    Example::

        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / ".checkpoint.pt.k2x_9abc.tmp").write_bytes(b"trunc")
        >>> _ = (folder / "notes.tmp").write_text("kept")
        >>> [p.name for p in remove_atomic_temporaries(folder)], sorted(p.name for p in folder.iterdir())
        (['.checkpoint.pt.k2x_9abc.tmp'], ['notes.tmp'])
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if _TEMPORARY.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.info("removed %d temporary files of interrupted writes from %s", len(removed), folder)
    return removed


@contextlib.contextmanager
def forked_rng(seed: int | None = None, device: torch.device | str | None = None) -> Iterator[None]:
    """
    A block whose draws from torch's generators leave them as they were, seeded with ``seed``
    where one is given.

    Evaluations use it so that evaluating (or not) never moves a training run's random
    streams, and seeded metrics so that they repeat exactly.

    :param seed: a seed for torch's generators inside the block, or ``None`` to keep their state.
    :type seed: int or None
    :param device: the device whose generator is forked besides the CPU's; ``None`` forks every
        visible CUDA device's.
    :type device: torch.device or str or None

    Example::

        >>> state = torch.get_rng_state()
        >>> with forked_rng(seed=0):
        ...     first = torch.rand(2)
        >>> with forked_rng(seed=0):
        ...     torch.equal(first, torch.rand(2))
        True
        >>> torch.equal(torch.get_rng_state(), state)
        True
    """
    if device is None:
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    else:
        device = torch.device(device)
        devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        yield
