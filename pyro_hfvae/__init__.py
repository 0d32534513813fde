# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
pyro_hfvae: structured and hierarchical disentangled representation learning on Pyro.

The package is laid out as Pyro is:

- :mod:`pyro_hfvae.infer`: the objectives (:class:`HFVAELoss`, :class:`HITLoss`, their base
  :class:`~pyro_hfvae.infer.TermsELBO`), the progressive schedule, :func:`tc_weight_bound`,
  and readers of a model's latent space: the structure graph
  (:mod:`pyro_hfvae.infer.inspect`) and the ArviZ export
  (:mod:`pyro_hfvae.infer.inference_data`).
- :mod:`pyro_hfvae.poutine`: named groups (:class:`group`, the group tree) and the plate
  layout of a trace.
- :mod:`pyro_hfvae.distributions`: per-variable log densities, the stable Concrete density.
- :mod:`pyro_hfvae.ops`: the aggregate posterior's log marginals, shared by the objectives
  and the metrics.
- :mod:`pyro_hfvae.models`, :mod:`pyro_hfvae.datasets`: ready-made models and data sets
  with ground-truth factors.
- :mod:`pyro_hfvae.metrics`: disentanglement and information metrics, including the
  information flow of a progressive run.
- :mod:`pyro_hfvae.plots`: figures of models, metrics and rate grids.
- :mod:`pyro_hfvae.training`: the trainer, configurations, checkpoints, run summaries, the
  HIT rate grid and the ``pyro-hfvae`` command line.
- :mod:`pyro_hfvae.util`: atomic file writes.

Importing the top level loads neither matplotlib, scikit-learn, scipy, arviz nor networkx.
"""
from pyro_hfvae.infer.hfvae import HFVAELoss
from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.infer.progressive import ProgressiveSchedule
from pyro_hfvae.infer.weight_bound import tc_weight_bound
from pyro_hfvae.poutine.groups import group

__version__ = "0.1.0"

__all__ = [
    "HFVAELoss",
    "HITLoss",
    "ProgressiveSchedule",
    "group",
    "tc_weight_bound",
]
