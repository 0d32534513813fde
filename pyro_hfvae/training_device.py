# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The device a run trains on, picked from ``[training] device``, and its random generators
forked for reads that must leave the run's course unchanged (private: used by
:class:`~pyro_hfvae.trainer.Trainer`).
"""
import contextlib
from collections.abc import Iterator

import torch

from pyro_hfvae.config import ConfigError


def _pick_device(name: str) -> torch.device:
    """
    The device named by ``[training] device``: ``"auto"`` is CUDA where torch finds it, else the CPU.

    Example::

        >>> _pick_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"expected a CUDA device for [training] device = {name!r} but torch finds none; "
                          "use device = 'cpu' or 'auto'")
    return device


@contextlib.contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    """
    A block whose draws from torch's CPU generator and ``device``'s leave them as they were.

    Example::

        >>> state = torch.get_rng_state()
        >>> with _forked_rng(torch.device("cpu")):
        ...     _ = torch.rand(3)
        >>> torch.equal(torch.get_rng_state(), state)
        True
    """
    # Evaluation must not move the training's random streams, so that evaluating (or not)
    # leaves the trained parameters unchanged.
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield
