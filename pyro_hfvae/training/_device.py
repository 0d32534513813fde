# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The device a run trains on, picked from ``[training] device`` (private: used by
:class:`~pyro_hfvae.training.trainer.Trainer`).
"""

import torch

from pyro_hfvae.training.config import ConfigError


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
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"expected [training] device = 'cuda:N' with N < {torch.cuda.device_count()} (the CUDA "
                          f"devices torch finds) but got {name!r}; use device = 'cuda' or 'auto'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"expected an MPS device for [training] device = {name!r} but torch finds none; "
                          "use device = 'cpu' or 'auto'")
    return device
