# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The training batches of a run: shuffled every epoch from a private generator whose state
a checkpoint holds, so that a resumed run draws the same batches (private: used by
:class:`~pyro_hfvae.training.trainer.Trainer`).
"""
from collections.abc import Mapping
from typing import Any

import torch

from pyro_hfvae.training.config import ConfigError


class _RandomBatches:
    """
    Batches of ``batch_size`` positions in ``range(size)``, each epoch a fresh random
    permutation (the last incomplete batch of an epoch is dropped, so every batch has the
    same size), drawn from a private generator whose state is checkpointed.

    Example::

        >>> batches = _RandomBatches(5, 2, seed=0, device=torch.device("cpu"))
        >>> [len(batches.next()) for _ in range(2)], batches.epoch  # two batches an epoch; one item left out
        ([2, 2], 0)
        >>> state = batches.state_dict()
        >>> later = [batches.next() for _ in range(3)]
        >>> batches.epoch
        2
        >>> batches.load_state_dict(state)
        >>> all(torch.equal(a, b) for a, b in zip(later, [batches.next() for _ in range(3)]))
        True
    """

    def __init__(self, size: int, batch_size: int, seed: int, device: torch.device) -> None:
        if batch_size > size:
            raise ConfigError(f"expected [training] batch_size <= the number of training items ({size}) but got "
                              f"{batch_size}; lower batch_size or raise [data] subset")
        self.size = size
        self.batch_size = batch_size
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self._new_epoch()

    def _new_epoch(self) -> None:
        self._epoch_state = self.generator.get_state()
        self._order = torch.randperm(self.size, generator=self.generator).to(self.device)
        self.position = 0

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > self.size:
            self.epoch += 1
            self._new_epoch()
        batch = self._order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_state": self._epoch_state, "epoch": self.epoch, "position": self.position,
                "size": self.size, "batch_size": self.batch_size}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if (state["size"], state["batch_size"]) != (self.size, self.batch_size):
            raise ValueError(f"expected a sampler state for {self.size} items in batches of {self.batch_size} but "
                             f"got {state['size']} items in batches of {state['batch_size']}")
        self.generator.set_state(state["epoch_state"])
        self._new_epoch()
        self.epoch = state["epoch"]
        self.position = state["position"]
