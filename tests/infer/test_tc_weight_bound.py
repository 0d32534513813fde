import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_hfvae import HFVAELoss, group, tc_weight_bound

B = 16


def equicorrelated(dim: int, rho: float, scale: float = 1.0) -> torch.Tensor:
    corr = torch.full((dim, dim), rho) + (1 - rho) * torch.eye(dim)
    return scale**2 * corr


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.8, 0.99])
@pytest.mark.parametrize("dim", [2, 3, 5])
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_equicorrelated_bound_matches_closed_form(rho, dim, scale):
    # The largest eigenvalue of an equicorrelation matrix is 1 + (dim - 1) rho; marginal
    # scales do not matter.
    prior = dist.MultivariateNormal(torch.zeros(dim), equicorrelated(dim, rho, scale))
    largest = 1 + (dim - 1) * rho
    assert tc_weight_bound(prior) == pytest.approx(largest / (largest - 1), rel=1e-5)


def test_low_rank_batched_and_wrapped_priors():
    cov_factor = torch.tensor([[1.0], [1.0]])
    prior = dist.LowRankMultivariateNormal(torch.zeros(2), cov_factor, torch.ones(2))  # rho = 1/2
    assert tc_weight_bound(prior) == pytest.approx(3.0)
    batched = dist.MultivariateNormal(torch.zeros(2, 2), torch.stack([equicorrelated(2, 0.2), equicorrelated(2, 0.8)]))
    assert tc_weight_bound(batched) == pytest.approx(1.8 / 0.8)
    assert tc_weight_bound(batched.expand([5, 2]).mask(True)) == pytest.approx(1.8 / 0.8)


@pytest.mark.parametrize(
    "prior, expected",
    [
        (dist.MultivariateNormal(torch.zeros(3), torch.diag(torch.tensor([1.0, 4.0, 9.0]))), math.inf),
        (dist.Normal(torch.zeros(2), 1.0).to_event(1), math.inf),
        # A negatively correlated pair stretches along (1, -1): its largest eigenvalue is 1.7.
        (dist.MultivariateNormal(torch.zeros(2), equicorrelated(2, -0.7)), 1.7 / 0.7),
    ],
    ids=["diagonal", "factorised", "negative-pair"],
)
def test_uncorrelated_priors_allow_every_weight(prior, expected):
    assert tc_weight_bound(prior) == pytest.approx(expected)


def stretched_loss(weight: float, stretch: float, rho: float, in_group: bool) -> float:
    """HFVAELoss of a code stretched by ``stretch`` along the prior's correlated direction."""
    codes = torch.linspace(-1.0, 1.0, B)[:, None] * torch.tensor([1.0, 1.0]) * stretch
    cov = equicorrelated(2, rho)

    def model():
        with pyro.plate("data", B):
            pyro.sample("z", dist.MultivariateNormal(torch.zeros(2), cov))
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.zeros(B))

    def guide():
        with pyro.plate("data", B):
            if in_group:
                with group("shape"):
                    pyro.sample("z", dist.Normal(codes, 0.3).to_event(1))
            else:
                pyro.sample("z", dist.Normal(codes, 0.3).to_event(1))

    # The site's TC sits at depth 1 (gamma) whether it is its own group or in a named one.
    loss = HFVAELoss(gamma=weight, dataset_size=B)
    return loss.loss(model, guide)


@pytest.mark.parametrize("rho", [0.5, 0.8])
@pytest.mark.parametrize("in_group", [False, True])
def test_bound_separates_bounded_from_unbounded_objectives(rho, in_group):
    bound = (1 + rho) / rho
    with pytest.warns(RuntimeWarning, match="unbounded below"):
        above = [stretched_loss(1.1 * bound, a, rho, in_group) for a in (10.0, 100.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        below = [stretched_loss(0.9 * bound, a, rho, in_group) for a in (10.0, 100.0)]
    # The quadratic part of the loss is (a^2 / 3) (1 - w rho / (1 + rho)) summed over the batch.
    assert above[1] < above[0] - 1000
    assert below[1] > below[0] + 1000


def test_warns_once_per_site():
    def model():
        with pyro.plate("data", B):
            pyro.sample("z", dist.MultivariateNormal(torch.zeros(2), equicorrelated(2, 0.8)))

    def guide():
        with pyro.plate("data", B):
            pyro.sample("z", dist.Normal(torch.zeros(B, 2), 1.0).to_event(1))

    loss = HFVAELoss(gamma=3.0, dataset_size=B)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            loss.loss(model, guide)
    assert len([w for w in caught if "unbounded below" in str(w.message)]) == 1
