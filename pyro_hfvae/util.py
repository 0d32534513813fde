# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Small utilities shared by every layer of the package: atomic file writes and forked random
number generators.
"""
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import torch

__all__ = [
    "atomic_file",
    "forked_rng",
]


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
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
