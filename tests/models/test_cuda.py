# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The ready-made models on a CUDA device equal their CPU copies (float64): posterior, encode,
decode, reconstruct and the ELBO of model and guide on the same (pre-drawn) samples.
"""

import copy

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyro_hfvae.models import VLAE, ConvHFVAE, HierarchicalVAE, LadderVAE
from pyro_hfvae.poutine.plate_layout import latent_sites

from ..fixed_noise import FixedNoise, gumbel

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
RTOL, ATOL = 1e-9, 1e-11  # float64: only the order of sums may differ

MODELS = {
    "ConvHFVAE-conv": lambda: ConvHFVAE((1, 64, 64), num_classes=3, style_dim=2, hidden_dim=8, channels=(2, 2, 4, 4)),
    "ConvHFVAE-mlp": lambda: ConvHFVAE((1, 16, 16), num_classes=3, style_dim=2, hidden_dim=8),
    "HierarchicalVAE": lambda: HierarchicalVAE((1, 16, 16), (3, 2), channels=(2,), hidden_dim=8),
    "LadderVAE": lambda: LadderVAE((1, 16, 16), (3, 2), channels=(2,), hidden_dim=8, likelihood="gaussian"),
    "VLAE": lambda: VLAE(levels=2, latent_dim=2, image_shape=(1, 16, 16), channels=2, hidden_dim=8),
}


def assert_close(actual, expected, name=""):
    torch.testing.assert_close(actual.cpu(), expected.cpu(), rtol=RTOL, atol=ATOL, msg=lambda m: f"{name}: {m}")


def run_model(name: str, device) -> dict:
    torch.manual_seed(0)
    model = copy.deepcopy(MODELS[name]().double()).to(device)
    shape = model.image_shape
    g = torch.Generator().manual_seed(1)
    x = torch.rand((5,) + tuple(shape), generator=g, dtype=torch.float64).round().to(device)
    with torch.no_grad():
        sites = [(site, node["fn"]) for site, node in latent_sites(poutine.trace(model.guide).get_trace(x))]
    noise = {}
    for site, fn in sites:
        size = (1,) + tuple(fn.batch_shape) + tuple(fn.event_shape)
        is_concrete = site == "y"
        noise[site] = (gumbel(size, g) if is_concrete else torch.randn(size, generator=g, dtype=torch.float64))
        noise[site] = noise[site].to(device)
    with torch.no_grad():
        codes = model.encode(x)
        out = {f"encode/{k}": v for k, v in codes.items()}
        out["decode"] = model.decode(codes)
        out["reconstruct"] = model.reconstruct(x)
        # sample() on a float32 copy: ConvHFVAE.sample draws float32 latents whatever the model's dtype.
        samples = MODELS[name]().to(device).sample(3)
    assert samples.device.type == torch.device(device).type and samples.shape == (3,) + tuple(shape)
    assert all(v.device.type == torch.device(device).type for v in out.values())
    pyro.clear_param_store()
    loss = Trace_ELBO().differentiable_loss(model.model, FixedNoise(noise)(model.guide), x)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    out["elbo"] = loss.detach()
    out.update({f"grad/{n}": grad for (n, _), grad in zip(model.named_parameters(), grads)})
    pyro.clear_param_store()
    return out


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("device", DEVICES)
def test_model_on_device_equals_cpu(device, name):
    expected = run_model(name, "cpu")
    actual = run_model(name, device)
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert_close(actual[key], value, key)
    assert any(key.startswith("grad/") and value.abs().max() > 1e-6 for key, value in expected.items())
