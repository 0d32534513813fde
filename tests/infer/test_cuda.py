# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The objectives on a CUDA device equal their CPU values: HFVAELoss and HITLoss (loss, terms and
gradients, float64, the same samples through pre-drawn noise), and a ProgressiveSchedule growing a
VLAE by one SVI step. Each comparison also runs CPU against CPU, so its logic is exercised
on machines without CUDA.
"""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.optim import Adam

from pyro_hfvae import HFVAELoss, group
from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.infer.progressive import ProgressiveSchedule
from pyro_hfvae.models import VLAE

from ..fixed_noise import FixedNoise, gumbel

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
N, B, K, D, X_DIM, P = 50, 6, 3, 4, 5, 3
TEMP = 0.7
# float64 throughout: the devices may sum in other orders, nothing more.
RTOL, ATOL = 1e-9, 1e-11


def assert_close(actual, expected, name=""):
    torch.testing.assert_close(actual.cpu(), expected.cpu(), rtol=RTOL, atol=ATOL, msg=lambda m: f"{name}: {m}")


def assert_terms_equal(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert actual[name] == pytest.approx(value, rel=RTOL, abs=ATOL), name


def to(tensors: dict, device) -> dict:
    return {k: v.detach().to(device).requires_grad_(v.requires_grad) for k, v in tensors.items()}


# ---- HFVAELoss -----------------------------------------------------------------------------------


def hfvae_inputs(seed: int = 0) -> tuple[dict, dict]:
    """Parameters (leaves) and noise, drawn on the CPU."""
    g = torch.Generator().manual_seed(seed)
    params = {
        "logits": torch.randn(B, K, generator=g, dtype=torch.float64),
        "loc": torch.randn(B, D, generator=g, dtype=torch.float64),
        "scale": 0.3 + torch.rand(B, D, generator=g, dtype=torch.float64),
        "weight": 0.5 * torch.randn(K + D, X_DIM, generator=g, dtype=torch.float64),
    }
    for value in params.values():
        value.requires_grad_(True)
    data = {
        "x": torch.randint(0, 2, (B, X_DIM), generator=g).double(),
        "prior_cov": torch.eye(D, dtype=torch.float64) + 0.4,
    }
    noise = {"y": gumbel((P, B, K), g), "z": torch.randn(P, B, D, generator=g, dtype=torch.float64)}
    return params, {**data, "noise": noise}


def hfvae_model_guide(params: dict, data: dict, nested: bool, correlated_prior: bool):
    device = params["loc"].device
    temp = torch.tensor(TEMP, dtype=torch.float64, device=device)
    idx = torch.arange(B, device=device)

    def model():
        with pyro.plate("data", size=N, subsample=idx, dim=-1):
            y = pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=torch.zeros(K, dtype=temp.dtype,
                                                                                          device=device)))
            zeros = torch.zeros(D, dtype=temp.dtype, device=device)
            if correlated_prior:
                z = pyro.sample("z", dist.MultivariateNormal(zeros, data["prior_cov"]))
            else:
                z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            logits = torch.cat([y, z], -1) @ params["weight"]
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=data["x"])

    def guide():
        with pyro.plate("data", size=N, subsample=idx, dim=-1):
            with group("class"):
                pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=params["logits"]))
            with group("style"):
                infer = {"group": "all"} if nested else {}
                pyro.sample("z", dist.Normal(params["loc"], params["scale"]).to_event(1), infer=infer)

    return model, FixedNoise(data["noise"])(guide)


HFVAE_CASES = {
    "plain": {},
    "chunked-pairwise": {"pairwise_memory_mb": 1e-4},
    "vectorized-particles": {"num_particles": P, "vectorize_particles": True, "max_plate_nesting": 1},
    "vectorized-chunked": {"num_particles": P, "vectorize_particles": True, "max_plate_nesting": 1,
                           "pairwise_memory_mb": 1e-4},
    "argmax-concrete": {"concrete_scoring": "argmax"},
    "nested-groups": {"level_weights": [2.0]},
    "correlated-prior": {},
}


def hfvae_loss_terms_grads(device, case: str):
    # A correlated prior bounds the within-group weight (tc_weight_bound): stay below it there.
    weights = (1.5, 2.0, 2.0) if case == "correlated-prior" else (1.5, 4.0, 3.0)
    params, data = hfvae_inputs()
    params = to(params, device)
    data = {"x": data["x"].to(device), "prior_cov": data["prior_cov"].to(device),
            "noise": {k: v.to(device) for k, v in data["noise"].items()}}
    model, guide = hfvae_model_guide(params, data, nested=case == "nested-groups",
                                     correlated_prior=case == "correlated-prior")
    loss_fn = HFVAELoss(*weights, **HFVAE_CASES[case])
    loss = loss_fn.differentiable_loss(model, guide)
    grads = torch.autograd.grad(loss, list(params.values()))
    assert loss.device.type == torch.device(device).type
    return loss.detach(), dict(loss_fn.terms), dict(zip(params, grads))


@pytest.mark.parametrize("case", list(HFVAE_CASES))
@pytest.mark.parametrize("device", DEVICES)
def test_hfvae_loss_terms_and_gradients_equal_cpu(device, case):
    expected_loss, expected_terms, expected_grads = hfvae_loss_terms_grads("cpu", case)
    loss, terms, grads = hfvae_loss_terms_grads(device, case)
    assert_close(loss, expected_loss, "loss")
    assert_terms_equal(terms, expected_terms)
    for name in expected_grads:
        assert grads[name].device.type == torch.device(device).type
        assert_close(grads[name], expected_grads[name], name)
    # The comparison has power: the terms and the gradients are not trivial.
    assert abs(expected_terms["tc_between"]) > 1e-6 and all(g.abs().max() > 1e-6 for g in expected_grads.values())


def test_fixed_noise_gives_the_samples():
    # The devices' random streams differ: the comparisons rely on the guide reading the CPU-drawn noise.
    params, data = hfvae_inputs()
    _, guide = hfvae_model_guide(params, data, nested=False, correlated_prior=False)
    trace = poutine.trace(guide).get_trace()
    expected_z = params["loc"] + params["scale"] * data["noise"]["z"][0]
    expected_y = torch.softmax((torch.log_softmax(params["logits"], -1) + data["noise"]["y"][0]) / TEMP, -1)
    assert_close(trace.nodes["z"]["value"], expected_z, "z")
    assert_close(trace.nodes["y"]["value"], expected_y, "y")
    assert trace.nodes["z"]["value"].requires_grad  # reparameterised: gradients flow through the sample


@pytest.mark.parametrize("device", DEVICES)
def test_chunked_pairwise_equals_whole_on_device(device):
    # On the device itself, the chunked (recomputed) tables give the whole tables' loss and gradients.
    whole_loss, whole_terms, whole_grads = hfvae_loss_terms_grads(device, "plain")
    chunked_loss, chunked_terms, chunked_grads = hfvae_loss_terms_grads(device, "chunked-pairwise")
    assert_close(chunked_loss, whole_loss, "loss")
    assert_terms_equal(chunked_terms, whole_terms)
    for name in whole_grads:
        assert_close(chunked_grads[name], whole_grads[name], name)


# ---- HITLoss -------------------------------------------------------------------------------------


class TwoLevels(torch.nn.Module):
    """z2 -> z1 -> x with a top-down guide; every tensor is made on the module's device."""

    def __init__(self) -> None:
        super().__init__()
        self.prior = torch.nn.Linear(D, 2 * D)
        self.post2 = torch.nn.Linear(D, 2 * D)
        self.post1 = torch.nn.Linear(2 * D, 2 * D)
        self.decoder = torch.nn.Linear(D, D)

    def plate(self, x):
        return pyro.plate("data", size=N, subsample=torch.arange(len(x), device=x.device), dim=-1)

    def model(self, x):
        pyro.module("two_levels", self)
        with self.plate(x):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(D), 1.0).to_event(1))
            loc, log_scale = self.prior(z2).chunk(2, -1)
            z1 = pyro.sample("z1", dist.Normal(loc, log_scale.exp()).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z1), 0.5).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("two_levels", self)
        with self.plate(x):
            loc, log_scale = self.post2(x).chunk(2, -1)
            z2 = pyro.sample("z2", dist.Normal(loc, log_scale.exp()).to_event(1))
            loc, log_scale = self.post1(torch.cat(torch.broadcast_tensors(x, z2), -1)).chunk(2, -1)
            pyro.sample("z1", dist.Normal(loc, log_scale.exp()).to_event(1))


def hit_loss_terms_grads(device, analytic_kl: bool, vectorize: bool):
    torch.manual_seed(0)
    net = TwoLevels().double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    noise = {name: torch.randn(P, B, D, generator=g, dtype=torch.float64) for name in ("z1", "z2")}
    net = copy.deepcopy(net).to(device)
    x, noise = x.to(device), {k: v.to(device) for k, v in noise.items()}
    options = dict(num_particles=P, vectorize_particles=True, max_plate_nesting=1) if vectorize else {}
    hit = HITLoss({"z1": 0.3, "z2": 2.5}, analytic_kl=analytic_kl, **options)
    loss = hit.differentiable_loss(net.model, FixedNoise(noise)(net.guide), x)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    names = [name for name, _ in net.named_parameters()]
    return loss.detach(), dict(hit.terms), dict(zip(names, grads))


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("analytic_kl", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_hit_loss_terms_and_gradients_equal_cpu(device, analytic_kl, vectorize):
    expected_loss, expected_terms, expected_grads = hit_loss_terms_grads("cpu", analytic_kl, vectorize)
    loss, terms, grads = hit_loss_terms_grads(device, analytic_kl, vectorize)
    assert_close(loss, expected_loss, "loss")
    assert_terms_equal(terms, expected_terms)
    for name in expected_grads:
        assert grads[name].device.type == torch.device(device).type
        assert_close(grads[name], expected_grads[name], name)
    assert expected_terms["rate/z1"] > 1e-3 and expected_terms["rate/z2"] > 1e-3


# ---- ProgressiveSchedule with VLAE ---------------------------------------------------------------


def vlae_svi_step(device, iteration: int):
    torch.manual_seed(0)
    vlae = VLAE(levels=3, latent_dim=2, image_shape=(1, 32, 32), channels=4, hidden_dim=8).double().to(device)
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(8, 1, 32, 32, generator=g) < 0.3).double().to(device)
    noise = {site: torch.randn(1, 8, 2, generator=g, dtype=torch.float64).to(device) for site in vlae.sites}
    schedule = ProgressiveSchedule(vlae.sites, steps_per_level=10, fade_in_steps=4)
    for _ in range(iteration):
        schedule.step()
    pyro.clear_param_store()
    hit = HITLoss(schedule)
    svi = SVI(vlae.model, FixedNoise(noise)(vlae.guide), Adam({"lr": 1e-2}), loss=hit)
    idx = torch.arange(8, device=device)
    loss = svi.step(x, idx, dataset_size=100, schedule=schedule)
    schedule.step()
    parameters = {name: value.detach().clone() for name, value in vlae.state_dict().items()}
    assert all(value.device.type == torch.device(device).type for value in parameters.values())
    with torch.no_grad():
        codes = vlae.encode(x, schedule)
        recon = vlae.reconstruct(x, schedule)
    pyro.clear_param_store()
    return loss, dict(hit.terms), parameters, codes, recon


@pytest.mark.parametrize("iteration", [0, 11, 25])  # stage 0; z2 fading in; all levels on
@pytest.mark.parametrize("device", DEVICES)
def test_progressive_vlae_svi_step_equals_cpu(device, iteration):
    expected = vlae_svi_step("cpu", iteration)
    loss, terms, parameters, codes, recon = vlae_svi_step(device, iteration)
    assert loss == pytest.approx(expected[0], rel=RTOL)
    assert_terms_equal(terms, expected[1])
    assert parameters.keys() == expected[2].keys()
    for name, value in expected[2].items():
        # One Adam step moves each weight by about lr * sign(gradient): equal to float64 precision.
        torch.testing.assert_close(parameters[name].cpu(), value, rtol=1e-8, atol=1e-10, msg=name)
    for site, value in expected[3].items():
        assert_close(codes[site], value, site)
    assert_close(recon, expected[4], "reconstruction")
