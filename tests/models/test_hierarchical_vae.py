# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, TraceMeanField_ELBO
from pyro.optim import Adam

from pyro_hfvae.distributions.util import latent_sites
from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.models import HierarchicalVAE, LadderVAE

SMALL = dict(channels=(4, 8), hidden_dim=16)
IMAGES = {
    "mnist": dict(image_shape=(1, 28, 28), likelihood="bernoulli"),
    "cifar": dict(image_shape=(3, 32, 32), likelihood="gaussian"),
}


def images(kind, batch=6):
    shape = IMAGES[kind]["image_shape"]
    x = torch.rand((batch,) + shape)
    return x.round() if IMAGES[kind]["likelihood"] == "bernoulli" else x


def latent_dims(depth):
    return tuple(range(2 + depth, 2, -1))  # bottom widest, e.g. (5, 4, 3)


@pytest.mark.parametrize("cls", [HierarchicalVAE, LadderVAE])
@pytest.mark.parametrize("kind", ["mnist", "cifar"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_trains_without_nan(cls, kind, depth):
    vae = cls(latent_dims=latent_dims(depth), **IMAGES[kind], **SMALL)
    x = images(kind)
    betas = {f"z{level}": 0.5 * level for level in range(1, depth + 1)}
    loss = HITLoss(betas)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-2}), loss)
    losses = [svi.step(x, idx=torch.arange(6), dataset_size=60) for _ in range(5)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sorted(k for k in loss.terms if k.startswith("rate/")) == [f"rate/z{level}" for level in range(1, depth + 1)]
    assert all(loss.terms[f"rate/z{level}"] >= 0 for level in range(1, depth + 1))  # analytic KLs


@pytest.mark.parametrize("cls", [HierarchicalVAE, LadderVAE])
def test_sites_shapes_and_order(cls):
    vae = cls(latent_dims=(5, 4, 3), **IMAGES["cifar"], **SMALL)
    x = images("cifar")
    trace = poutine.trace(vae.guide).get_trace(x)
    latent = [name for name, _ in latent_sites(trace)]
    assert latent == ["z3", "z2", "z1"]  # top-down
    assert [trace.nodes[n]["value"].shape[-1] for n in ("z1", "z2", "z3")] == [5, 4, 3]
    model_trace = poutine.trace(poutine.replay(vae.model, trace=trace)).get_trace(x)
    assert model_trace.nodes["x"]["is_observed"]
    assert vae.site_names == ("z1", "z2", "z3")
    means = vae.encode(x)
    assert list(means) == ["z1", "z2", "z3"]
    assert [m.shape for m in means.values()] == [(6, 5), (6, 4), (6, 3)]
    recon = vae.reconstruct(x)
    assert recon.shape == x.shape and 0 <= recon.min() and recon.max() <= 1
    assert vae.sample(7).shape == (7, 3, 32, 32)


def test_encode_is_the_mode_path_of_the_guide():
    vae = HierarchicalVAE(latent_dims=(5, 3), **IMAGES["mnist"], **SMALL)
    x = images("mnist")
    means = vae.encode(x)
    # Condition the guide's top site on its mean: z1's location then equals encode's z1.
    trace = poutine.trace(poutine.condition(vae.guide, data={"z2": means["z2"]})).get_trace(x)
    torch.testing.assert_close(trace.nodes["z2"]["fn"].base_dist.loc, means["z2"])
    torch.testing.assert_close(trace.nodes["z1"]["fn"].base_dist.loc, means["z1"])


def test_ladder_posterior_is_the_precision_weighted_merge():
    vae = LadderVAE(latent_dims=(4, 3), **IMAGES["mnist"], **SMALL)
    x = images("mnist")
    trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=trace)).get_trace(x)
    bottom_up_loc, bottom_up_scale = vae._bottom_up(x)[0]
    prior = model_trace.nodes["z1"]["fn"].base_dist
    posterior = trace.nodes["z1"]["fn"].base_dist
    # Brute force: the product of the two Gaussian densities, normalised, per coordinate.
    grid = torch.linspace(-8, 8, 40001)
    log_density = torch.distributions.Normal(bottom_up_loc[..., None], bottom_up_scale[..., None]).log_prob(
        grid
    ) + torch.distributions.Normal(prior.loc[..., None], prior.scale[..., None]).log_prob(grid)
    weights = torch.softmax(log_density.double(), -1)
    mean = (weights * grid).sum(-1)
    std = (weights * (grid - mean[..., None]) ** 2).sum(-1).sqrt()
    torch.testing.assert_close(posterior.loc.double(), mean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(posterior.scale.double(), std, atol=1e-4, rtol=1e-3)
    # The top layer is the bottom-up Gaussian alone.
    top_loc, top_scale = vae._bottom_up(x)[1]
    torch.testing.assert_close(trace.nodes["z2"]["fn"].base_dist.loc, top_loc)


def test_data_plate_scaling():
    vae = HierarchicalVAE(latent_dims=(3,), **IMAGES["mnist"], **SMALL)
    x = images("mnist")
    trace = poutine.trace(vae.guide).get_trace(x, torch.arange(6), 60)
    assert trace.nodes["z1"]["scale"] == pytest.approx(10.0)
    assert poutine.trace(vae.guide).get_trace(x, None, 60).nodes["z1"]["scale"] == pytest.approx(10.0)
    assert poutine.trace(vae.guide).get_trace(x).nodes["z1"]["scale"] == 1.0
    model, guide = poutine.replay(vae.model, trace=trace), poutine.replay(vae.guide, trace=trace)
    assert HITLoss().loss(model, guide, x, idx=torch.arange(6), dataset_size=60) == pytest.approx(
        TraceMeanField_ELBO().loss(model, guide, x, idx=torch.arange(6), dataset_size=60), rel=1e-6
    )


def test_vectorized_particles():
    vae = LadderVAE(latent_dims=(4, 3), **IMAGES["mnist"], **SMALL)
    loss = HITLoss({"z1": 2.0}, num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    value = loss.loss(vae.model, vae.guide, images("mnist"))
    assert torch.isfinite(torch.tensor(value))


def test_learned_and_fixed_gaussian_scale():
    learned = HierarchicalVAE(latent_dims=(3,), **IMAGES["cifar"], **SMALL)
    fixed = HierarchicalVAE(latent_dims=(3,), image_shape=(3, 32, 32), likelihood="gaussian", obs_scale=0.2, **SMALL)
    assert "log_obs_scale" in dict(learned.named_parameters())
    assert "log_obs_scale" not in dict(fixed.named_parameters())
    x = images("cifar")
    trace = poutine.trace(poutine.replay(fixed.model, trace=poutine.trace(fixed.guide).get_trace(x))).get_trace(x)
    assert torch.allclose(trace.nodes["x"]["fn"].base_dist.scale, torch.tensor(0.2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(latent_dims=()), "latent_dims"),
        (dict(latent_dims=8), "latent_dims"),
        (dict(latent_dims=(4, 0)), "latent_dims"),
        (dict(image_shape=(1, 30, 30)), "divisible by 4"),
        (dict(likelihood="poisson"), "likelihood"),
        (dict(obs_scale=0.1), "obs_scale"),
        (dict(likelihood="gaussian", obs_scale=-1.0), "obs_scale"),
        (dict(channels=()), "channels"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HierarchicalVAE(**kwargs)


def test_bad_inputs():
    vae = HierarchicalVAE(latent_dims=(3,), **IMAGES["mnist"], **SMALL)
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 1, 28, 28\)"):
        vae.model(torch.zeros(2, 784))
    with pytest.raises(ValueError, match="dataset_size"):
        vae.guide(images("mnist"), idx=torch.arange(6))
    with pytest.raises(ValueError, match="one index per image"):
        vae.guide(images("mnist"), idx=torch.arange(5), dataset_size=60)


def test_two_models_in_one_param_store_need_two_names():
    first = HierarchicalVAE(latent_dims=(3,), **IMAGES["mnist"], **SMALL)
    second = LadderVAE(latent_dims=(3,), **IMAGES["mnist"], **SMALL)
    x = images("mnist")
    first.guide(x)
    second.guide(x)
    names = set(pyro.get_param_store().keys())
    assert any(n.startswith("hierarchical_vae$$$") for n in names) and any(n.startswith("ladder_vae$$$") for n in names)
