# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The training machinery behind the ``pyro-hfvae`` command: the :class:`Trainer`, run
configurations (:mod:`~pyro_hfvae.training.config`, with the shipped configurations), the
optimiser that steps all parameters together (:class:`GroupedOptim`), the allocator setting
that keeps freed memory for the next step (:func:`retain_freed_memory`), checkpoints, the run
summary and figures, the command line, the HIT rate grid, and the seed-by-seed comparison of
two methods (:func:`paired_comparison`, with Holm's adjustment
for a family of them, :func:`holm`). Modules whose names start with
an underscore are private helpers of the trainer and of the configurations.
"""
from pyro_hfvae.training.allocator import retain_freed_memory
from pyro_hfvae.training.checkpoint import load_checkpoint, save_checkpoint
from pyro_hfvae.training.config import ConfigError, load_config, shipped_configs
from pyro_hfvae.training.grouped_optim import GroupedOptim
from pyro_hfvae.training.paired_comparison import PairedComparison, holm, paired_comparison
from pyro_hfvae.training.trainer import Trainer

__all__ = [
    "ConfigError",
    "GroupedOptim",
    "PairedComparison",
    "Trainer",
    "holm",
    "load_checkpoint",
    "load_config",
    "paired_comparison",
    "retain_freed_memory",
    "save_checkpoint",
    "shipped_configs",
]
