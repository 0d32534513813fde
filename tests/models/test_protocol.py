# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import pytest
import torch
from pyro import poutine

from pyro_hfvae.models import VLAE, ConvHFVAE, HierarchicalVAE, LadderVAE, ModelProtocol, SemiSupervisedHFVAE
from pyro_hfvae.poutine.plate_layout import latent_sites

SHAPE = (1, 16, 16)

MODELS = {
    "ConvHFVAE": lambda: ConvHFVAE(SHAPE, num_classes=3, style_dim=2, hidden_dim=8),
    "ConvHFVAE-style-only": lambda: ConvHFVAE(SHAPE, num_classes=0, style_dim=2, hidden_dim=8),
    "HierarchicalVAE": lambda: HierarchicalVAE(SHAPE, (3, 2), channels=(2,), hidden_dim=8),
    "LadderVAE": lambda: LadderVAE(SHAPE, (3, 2), channels=(2,), hidden_dim=8, likelihood="gaussian"),
    "VLAE": lambda: VLAE(levels=2, latent_dim=2, image_shape=SHAPE, channels=2, hidden_dim=8),
    "SemiSupervisedHFVAE": lambda: SemiSupervisedHFVAE(SHAPE, num_classes=3, style_dim=2, hidden_dim=8,
                                                       style_hidden_dim=4),
}


def images(num=4):
    return torch.rand((num,) + SHAPE, generator=torch.Generator().manual_seed(0)).round()


def likelihood_mean(model, latents, x):
    """The mean of the model's observation site "x" with the latent sites set to ``latents``."""
    trace = poutine.trace(poutine.condition(model.model, data=dict(latents))).get_trace(x)
    return trace.nodes["x"]["fn"].base_dist.mean


@pytest.mark.parametrize("name", MODELS)
def test_models_conform(name):
    model = MODELS[name]()
    assert isinstance(model, ModelProtocol)
    assert not isinstance(torch.nn.Linear(2, 2), ModelProtocol)


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_decode_of_encode_is_the_likelihood_mean_and_the_reconstruction(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    x = images()
    codes = model.encode(x)
    assert isinstance(codes, dict) and codes
    sites = [site for site, _ in latent_sites(poutine.trace(model.guide).get_trace(x))]
    assert sorted(codes) == sorted(sites)
    assert all(value.shape[0] == len(x) for value in codes.values())
    decoded = model.decode(codes)
    assert decoded.shape == x.shape
    assert ((decoded >= 0) & (decoded <= 1)).all()
    torch.testing.assert_close(decoded, likelihood_mean(model, codes, x))
    assert torch.equal(decoded, model.reconstruct(x))


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_sample_decodes_the_prior(name):
    model = MODELS[name]()
    samples = model.sample(5)
    assert samples.shape == (5,) + SHAPE
    assert ((samples >= 0) & (samples <= 1)).all()


def test_decode_names_missing_sites():
    with pytest.raises(ValueError, match=r"expected latents for the sites \['y', 'z'\]"):
        MODELS["ConvHFVAE"]().decode({"z": torch.zeros(1, 2)})
    with pytest.raises(ValueError, match="'z1'"):
        MODELS["HierarchicalVAE"]().decode({"z2": torch.zeros(1, 2)})
