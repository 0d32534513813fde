import warnings

import numpy as np
import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # arviz announces its refactor on import
    import arviz as az

from pyro_hfvae.datasets import Digits
from pyro_hfvae.distributions.util import distribution_mean
from pyro_hfvae.infer.inference_data import (
    latent_groups,
    latent_means,
    latent_posterior,
    to_inference_data,
)
from pyro_hfvae.models import HierarchicalVAE
from pyro_hfvae.models.conv_hfvae import ConvHFVAE


@pytest.fixture
def vae():
    return ConvHFVAE((1, 8, 8), num_classes=3, style_dim=2, hidden_dim=16)


def test_means_posterior_and_groups_of_the_guide(vae):
    x = torch.rand(5, 1, 8, 8)
    codes = vae.encode(x)
    means = latent_means(vae.guide, x)
    assert list(means) == ["y", "z"]
    assert torch.allclose(means["y"], codes["y"]) and torch.allclose(means["z"], codes["z"])
    posterior = latent_posterior(vae.guide, x)
    assert torch.allclose(posterior["z"].mean, vae.posterior(x)["z"].mean)
    assert latent_groups(vae.guide, x) == {"y": "class", "z": "style"}


def test_mode_path_of_a_hierarchical_guide():
    vae = HierarchicalVAE((1, 8, 8), latent_dims=(3, 2), channels=(4,), hidden_dim=8)
    x = torch.rand(4, 1, 8, 8)
    means = latent_means(vae.guide, x)
    expected = vae.encode(x)  # the model's own mode path: each layer at the mean given the mean above
    assert set(means) == {"z1", "z2"}
    for site in means:
        assert torch.allclose(means[site], expected[site], atol=1e-6)


def test_distribution_mean_of_a_concrete_is_its_probabilities():
    import pyro.distributions as dist

    probs = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    fn = dist.RelaxedOneHotCategorical(torch.tensor(0.3), probs=probs)
    assert torch.allclose(distribution_mean(fn), probs)
    with pytest.raises(ValueError, match="defines none"):
        distribution_mean(dist.LKJCholesky(3, 1.0))


def test_inference_data_of_a_data_set_with_factors(vae):
    dataset = Digits()
    indices = np.array([0, 5, 17, 40, 41])
    idata = to_inference_data(vae, dataset, indices=indices)
    posterior = idata.posterior
    assert posterior["z"].dims == ("chain", "draw", "z_dim") and posterior["z"].shape == (1, 5, 2)
    assert posterior["y"].shape == (1, 5, 3)
    with torch.no_grad():
        codes = vae.encode(dataset.observations(indices))
    np.testing.assert_allclose(posterior["z"].values[0], codes["z"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(posterior["y"].values[0], codes["y"].numpy(), rtol=1e-6)
    # the factor is a coordinate along the data points, and constant data
    np.testing.assert_array_equal(posterior["digit"].values, dataset.factors_of(indices)[:, 0])
    np.testing.assert_array_equal(posterior["item"].values, indices)
    np.testing.assert_array_equal(idata.constant_data["digit"].values, dataset.factors_of(indices)[:, 0])
    assert sorted(posterior.attrs["groups"]) == ["y=class", "z=style"]
    # ArviZ works on the latent space
    summary = az.summary(idata, var_names=["z"], kind="stats")
    assert list(summary.index) == ["z[0]", "z[1]"]
    np.testing.assert_allclose(summary["mean"].values, codes["z"].mean(0).numpy(), atol=1e-3)
    import matplotlib

    matplotlib.use("Agg")
    az.plot_pair(idata, var_names=["z"])


def test_posterior_samples_as_chains(vae):
    x = torch.rand(40, 1, 8, 8)
    idata = to_inference_data(vae, x, num_samples=3, batch_size=16, random_state=1)
    z = idata.posterior["z"].values
    assert z.shape == (3, 40, 2) and idata.posterior.attrs["kind"] == "samples"
    assert not np.allclose(z[0], z[1])  # independent draws
    # the empirical mean over many chains approaches the posterior mean
    many = to_inference_data(vae, x[:2], num_samples=400).posterior["z"].values.mean(0)
    with torch.no_grad():
        np.testing.assert_allclose(many, vae.encode(x[:2])["z"].numpy(), atol=0.25)
    # reproducible and independent of the global generator
    torch.manual_seed(123)
    again = to_inference_data(vae, x, num_samples=3, batch_size=16, random_state=1)
    np.testing.assert_array_equal(again.posterior["z"].values, z)


def test_inference_data_errors(vae):
    with pytest.raises(TypeError, match="expected a model with a guide"):
        to_inference_data(object(), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="expected factors of shape"):
        to_inference_data(vae, torch.rand(2, 1, 8, 8), factors=np.zeros((3, 1)))
    with pytest.raises(ValueError, match="expected indices only with a data set"):
        to_inference_data(vae, torch.rand(2, 1, 8, 8), indices=[0])
