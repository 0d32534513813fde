# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Reparameterised distributions that read pre-drawn noise, so that a program sampled on a CUDA
device draws exactly the samples it draws on the CPU (the devices' random streams differ), and
the values still depend on the distributions' parameters (gradients flow through the samples).

The noise is drawn on the CPU (float64) and moved to the device; :class:`FixedNoise` swaps it
into the ``Normal`` and ``RelaxedOneHotCategorical`` sites of any Pyro program.
"""

import torch
from pyro import distributions as dist
from pyro.poutine.messenger import Messenger


def _noise_for(noise: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``noise`` of shape (P, *batch, *event) for a sample of ``shape``: its first P' particles or its first one."""
    if len(shape) == noise.dim():
        return noise[: shape[0]]
    if len(shape) == noise.dim() - 1:
        return noise[0]
    raise ValueError(f"expected a sample shape of {noise.dim() - 1} or {noise.dim()} dims but got {tuple(shape)}")


class FixedNoiseNormal(dist.Normal):
    """``loc + scale * noise``: a Normal whose reparameterised sample reads ``noise``."""

    def __init__(self, loc, scale, noise: torch.Tensor, validate_args=None) -> None:
        super().__init__(loc, scale, validate_args=validate_args)
        self.noise = noise

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        return self.loc.expand(shape) + self.scale.expand(shape) * _noise_for(self.noise, shape)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(FixedNoiseNormal, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.noise = self.noise
        return new


class FixedNoiseConcrete(dist.RelaxedOneHotCategorical):
    """``softmax((logits + gumbel) / temperature)``: a Concrete whose sample reads Gumbel ``noise``."""

    def __init__(self, temperature, logits, noise: torch.Tensor, validate_args=None) -> None:
        super().__init__(temperature, logits=logits, validate_args=validate_args)
        self.noise = noise

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        return torch.softmax((self.logits.expand(shape) + _noise_for(self.noise, shape)) / self.temperature, -1)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(FixedNoiseConcrete, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.noise = self.noise
        return new


class FixedNoise(Messenger):
    """
    Replaces each latent ``Normal`` (possibly ``.to_event``) or Concrete site named in ``noise`` by
    its fixed-noise twin: ``FixedNoise({"z": eps})(guide)`` samples ``z = loc + scale * eps``.
    """

    def __init__(self, noise: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.noise = noise

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or msg["name"] not in self.noise:
            return
        fn, event_ndims = msg["fn"], 0
        while isinstance(fn, dist.Independent):
            event_ndims += fn.reinterpreted_batch_ndims
            fn = fn.base_dist
        noise = self.noise[msg["name"]]
        if isinstance(fn, dist.Normal):
            new = FixedNoiseNormal(fn.loc, fn.scale, noise)
        elif isinstance(fn, dist.RelaxedOneHotCategorical):
            new = FixedNoiseConcrete(fn.temperature, fn.logits, noise)
        else:
            raise TypeError(f"expected a Normal or Concrete at site {msg['name']!r} but got {type(fn).__name__}")
        msg["fn"] = new.to_event(event_ndims) if event_ndims else new


def gumbel(shape, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """Standard Gumbel noise drawn on the CPU."""
    uniform = torch.rand(shape, generator=generator, dtype=dtype).clamp(1e-12, 1 - 1e-12)
    return -torch.log(-torch.log(uniform))
