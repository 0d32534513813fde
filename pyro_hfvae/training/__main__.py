# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
``python -m pyro_hfvae.training``: the ``pyro-hfvae`` command (:mod:`pyro_hfvae.training.cli`),
as ``torchrun`` launches it for data-parallel training::

    torchrun --standalone --nproc_per_node=2 -m pyro_hfvae.training train --out runs/ddp
"""
import sys

from pyro_hfvae.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
