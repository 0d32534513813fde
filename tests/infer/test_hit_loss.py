# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam
from torch.distributions import kl_divergence

from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.infer.terms_elbo import NonFiniteLossError
from pyro_hfvae.poutine.groups import group

N, B, D = 50, 6, 3


class Chain(torch.nn.Module):
    """A model with ``depth`` Gaussian layers z1 (bottom) .. z<depth> (top) and a top-down guide."""

    def __init__(self, depth: int, plate_size: int | None = N, student_top: bool = False):
        super().__init__()
        self.depth, self.plate_size, self.student_top = depth, plate_size, student_top
        self.prior_nets = torch.nn.ModuleList(torch.nn.Linear(D, 2 * D) for _ in range(depth - 1))
        self.post_nets = torch.nn.ModuleList(torch.nn.Linear(2 * D, 2 * D) for _ in range(depth))
        self.decoder = torch.nn.Linear(D, D)
        with torch.no_grad():  # moderate rates, so that sampled estimates are informative
            for param in self.parameters():
                param.mul_(0.5)

    def plate(self, x):
        if self.plate_size is None:
            return pyro.plate("data", x.shape[0])
        return pyro.plate("data", size=self.plate_size, subsample=torch.arange(x.shape[0]))

    def model(self, x):
        pyro.module("chain", self)
        with self.plate(x):
            top = dist.StudentT(4.0, torch.zeros(D), 1.0) if self.student_top else dist.Normal(torch.zeros(D), 1.0)
            z = pyro.sample(f"z{self.depth}", top.to_event(1))
            for level in range(self.depth - 1, 0, -1):
                loc, log_scale = self.prior_nets[level - 1](z).chunk(2, -1)
                z = pyro.sample(f"z{level}", dist.Normal(loc, log_scale.exp()).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 0.5).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("chain", self)
        with self.plate(x):
            z = torch.zeros_like(x)
            for level in range(self.depth, 0, -1):
                loc, log_scale = self.post_nets[level - 1](torch.cat(torch.broadcast_tensors(x, z), -1)).chunk(2, -1)
                z = pyro.sample(f"z{level}", dist.Normal(loc, log_scale.exp()).to_event(1))


def sites(depth):
    return [f"z{level}" for level in range(1, depth + 1)]


def particles(fn, num_particles, vectorize, max_plate_nesting=1):
    """``fn`` inside the plate that vectorized particles add (as pyro.infer.ELBO does)."""

    def wrapped(x):
        if not vectorize:
            return fn(x)
        with pyro.plate("num_particles_vectorized", num_particles, dim=-(max_plate_nesting + 1)):
            return fn(x)

    return wrapped


def replayed(chain, x, num_particles=1, vectorize=False):
    """Model and guide replayed against one guide trace (vectorized: under the particle plate)."""
    trace = poutine.trace(particles(chain.guide, num_particles, vectorize)).get_trace(x)
    return poutine.replay(chain.model, trace=trace), poutine.replay(chain.guide, trace=trace), trace


def loss_and_grads(elbo, model, guide, chain, x, seed=None):
    chain.zero_grad()
    if seed is not None:
        pyro.set_rng_seed(seed)
    loss = elbo.differentiable_loss(model, guide, x)
    loss.backward(retain_graph=True)  # replayed values keep the graph of the traced guide
    return loss.detach(), [p.grad.clone() for p in chain.parameters()]


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("num_particles", [1, 3])
@pytest.mark.parametrize("analytic_kl", [False, True])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_all_betas_one_is_the_elbo(depth, analytic_kl, num_particles, vectorize):
    chain = Chain(depth)
    x = torch.randn(B, D)
    if vectorize:
        # Same samples from the same seed: under replay the plates do not broadcast the guide's
        # distributions, and TraceMeanField_ELBO then counts one KL for all vectorized particles.
        model, guide, seed = chain.model, chain.guide, 123
    else:
        (model, guide, _), seed = replayed(chain, x, num_particles), None
    options = dict(num_particles=num_particles, vectorize_particles=vectorize, max_plate_nesting=1)
    reference = (TraceMeanField_ELBO if analytic_kl else Trace_ELBO)(**options)
    hit = HITLoss({name: 1.0 for name in sites(depth)}, analytic_kl=analytic_kl, **options)
    expected, expected_grads = loss_and_grads(reference, model, guide, chain, x, seed)
    actual, actual_grads = loss_and_grads(hit, model, guide, chain, x, seed)
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-4)
    for a, e in zip(actual_grads, expected_grads):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)
    # The decomposition adds up: elbo = -(distortion + rate), and N * (-elbo) is the loss.
    assert hit.terms["elbo"] == pytest.approx(-(hit.terms["distortion"] + hit.terms["rate"]), rel=1e-6)
    assert hit.terms["rate"] == pytest.approx(sum(hit.terms[f"rate/{s}"] for s in sites(depth)), rel=1e-6)
    assert -N * hit.terms["elbo"] == pytest.approx(actual.item(), rel=1e-5)


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("analytic_kl", [False, True])
def test_loss_is_distortion_plus_weighted_rates_by_hand(analytic_kl, vectorize):
    chain = Chain(3)
    x = torch.randn(B, D)
    num_particles = 4 if vectorize else 1
    model, guide, trace = replayed(chain, x, num_particles, vectorize)
    betas = {"z1": 0.3, "z2": 2.5, "z3": 7.0}
    hit = HITLoss(
        betas,
        analytic_kl=analytic_kl,
        num_particles=num_particles,
        vectorize_particles=vectorize,
        max_plate_nesting=1,
    )
    loss = hit.loss(model, guide, x)

    # Independent computation from the traces, per particle and data point.
    model_trace = poutine.trace(
        poutine.replay(particles(chain.model, num_particles, vectorize), trace=trace)
    ).get_trace(x)
    log_lik = model_trace.nodes["x"]["fn"].log_prob(x).reshape(-1, B)
    rates = {}
    for name in betas:
        q, p = trace.nodes[name]["fn"], model_trace.nodes[name]["fn"]
        value = trace.nodes[name]["value"]
        rate = kl_divergence(q, p) if analytic_kl else q.log_prob(value) - p.log_prob(value)
        rates[name] = rate.reshape(-1, B)
    per_point = -log_lik + sum(b * rates[n] for n, b in betas.items())
    expected = (N / B) * per_point.sum(-1).mean(0)
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    assert hit.terms["distortion"] == pytest.approx(-log_lik.mean().item(), rel=1e-5)
    for name, beta in betas.items():
        assert hit.terms[f"rate/{name}"] == pytest.approx(rates[name].mean().item(), rel=1e-5, abs=1e-6)
        assert hit.terms[f"beta/{name}"] == pytest.approx(beta)
    assert hit.terms["rate"] == pytest.approx(sum(r.mean().item() for r in rates.values()), rel=1e-5)


def test_analytic_and_sampled_rates_agree_in_expectation():
    chain = Chain(2)
    x = torch.randn(B, D)
    num_particles = 4000
    kwargs = dict(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)
    sampled = HITLoss(analytic_kl=False, **kwargs)
    analytic = HITLoss(analytic_kl=True, **kwargs)
    with torch.no_grad():
        model, guide, trace = replayed(chain, x, num_particles, vectorize=True)
        sampled.loss(model, guide, x)
        analytic.loss(model, guide, x)
        # Per-particle sampled rates on the same samples, for the standard error.
        model_trace = poutine.trace(poutine.replay(particles(chain.model, num_particles, True), trace=trace)).get_trace(
            x
        )
    for name in ("z1", "z2"):
        q, p = trace.nodes[name]["fn"], model_trace.nodes[name]["fn"]
        value = trace.nodes[name]["value"]
        per_particle = (q.log_prob(value) - p.log_prob(value)).mean(-1)
        standard_error = per_particle.std().item() / math.sqrt(num_particles)
        assert sampled.terms[f"rate/{name}"] == pytest.approx(per_particle.mean().item(), rel=1e-5)
        # z2's KL is exact given x; z1's is exact given the sampled z2, so both are unbiased.
        assert abs(sampled.terms[f"rate/{name}"] - analytic.terms[f"rate/{name}"]) < 4 * standard_error
        assert standard_error < 0.05 * analytic.terms[f"rate/{name}"]  # the test has power


def test_sampled_fallback_where_torch_has_no_kl():
    chain = Chain(2, student_top=True)  # KL(Normal || StudentT) is not registered
    x = torch.randn(B, D)
    model, guide, _ = replayed(chain, x)
    hit = HITLoss(analytic_kl=True)
    mixed = hit.loss(model, guide, x)
    sampled_top = HITLoss(analytic_kl=False)
    sampled_top.loss(model, guide, x)
    assert hit.terms["rate/z2"] == pytest.approx(sampled_top.terms["rate/z2"], rel=1e-6)
    assert hit.terms["rate/z1"] != pytest.approx(sampled_top.terms["rate/z1"], rel=1e-3)
    assert mixed == pytest.approx(TraceMeanField_ELBO().loss(model, guide, x), rel=1e-6)
    assert len(hit._no_kl) == 1
    hit.loss(model, guide, x)  # the failed pair is not tried again
    assert len(hit._no_kl) == 1


class ClassAndStyle(torch.nn.Module):
    """A Concrete(K) class and a Normal style, each with its own weight in HITLoss."""

    K = 4

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.logits = torch.nn.Linear(D, self.K)
        self.loc = torch.nn.Linear(D, D)
        self.decoder = torch.nn.Linear(self.K + D, D)
        self.scale = scale

    def model(self, x):
        pyro.module("cs", self)
        temperature = torch.tensor(0.5)
        with pyro.plate("data", size=N, subsample=torch.arange(x.shape[0])):
            y = pyro.sample("y", dist.RelaxedOneHotCategorical(temperature, logits=torch.zeros(self.K)))
            z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(torch.cat([y, z], -1)), 0.5).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("cs", self)
        temperature = torch.tensor(0.5)
        with pyro.plate("data", size=N, subsample=torch.arange(x.shape[0])):
            logits = self.scale * self.logits(x)
            pyro.sample("y", dist.RelaxedOneHotCategorical(temperature, logits=logits))
            pyro.sample("z", dist.Normal(self.loc(x), 0.7).to_event(1))


@pytest.mark.parametrize("concrete_scoring", ["relaxed", "argmax"])
def test_concrete_scoring_by_hand(concrete_scoring):
    net = ClassAndStyle()
    x = torch.randn(B, D)
    model, guide, trace = replayed(net, x)
    betas = {"y": 0.3, "z": 5.0}
    hit = HITLoss(betas, concrete_scoring=concrete_scoring)
    loss = hit.loss(model, guide, x)
    model_trace = poutine.trace(model).get_trace(x)
    q_y, p_y = trace.nodes["y"]["fn"], model_trace.nodes["y"]["fn"]
    y = trace.nodes["y"]["value"]
    if concrete_scoring == "argmax":
        label = y.argmax(-1)
        rate_y = (dist.Categorical(logits=q_y.logits).log_prob(label)
                  - dist.Categorical(logits=p_y.logits).log_prob(label))
    else:
        rate_y = q_y.log_prob(y) - p_y.log_prob(y)  # finite here: a moderate posterior
    rate_z = kl_divergence(trace.nodes["z"]["fn"], model_trace.nodes["z"]["fn"])
    log_lik = model_trace.nodes["x"]["fn"].log_prob(x)
    expected = -(N / B) * (log_lik - betas["y"] * rate_y - betas["z"] * rate_z).sum()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    assert hit.terms["rate/y"] == pytest.approx(rate_y.mean().item(), rel=1e-5, abs=1e-6)


def test_argmax_scoring_does_not_charge_a_confident_class_the_relaxed_density():
    # A confident posterior over K classes: its argmax-scored rate is at most log K, the
    # relaxed density's expected rate tens of nats (about 75 here, over 500 particles).
    pyro.set_rng_seed(0)
    net = ClassAndStyle(scale=30.0)
    x = torch.randn(B, D)
    rates = {}
    for scoring in ("relaxed", "argmax"):
        hit = HITLoss(concrete_scoring=scoring, num_particles=500, vectorize_particles=True, max_plate_nesting=1)
        hit.loss(net.model, net.guide, x)
        rates[scoring] = hit.terms["rate/y"]
    assert rates["argmax"] <= math.log(ClassAndStyle.K) + 1e-5
    assert rates["relaxed"] > 30.0


class Schedule:
    def __init__(self):
        self.step = 0

    def betas(self):
        return {"z2": 1.0 + self.step}


@pytest.mark.parametrize("kind", ["provider", "callable"])
def test_betas_are_read_at_every_step(kind):
    chain = Chain(2)
    x = torch.randn(B, D)
    schedule = Schedule()
    hit = HITLoss(schedule if kind == "provider" else schedule.betas, default_beta=0.5)
    svi = SVI(chain.model, chain.guide, Adam({"lr": 1e-3}), hit)
    seen = []
    for step in range(3):
        schedule.step = step
        svi.step(x)
        seen.append((hit.terms["beta/z1"], hit.terms["beta/z2"]))
    assert seen == [(0.5, 1.0), (0.5, 2.0), (0.5, 3.0)]


def test_changing_a_beta_changes_the_loss_by_its_rate():
    chain = Chain(2)
    x = torch.randn(B, D)
    model, guide, _ = replayed(chain, x)
    betas = {"z1": 1.0, "z2": 1.0}
    hit = HITLoss(betas)
    before = hit.loss(model, guide, x)
    betas["z2"] = 3.0  # a mutable mapping is read again too
    after = hit.loss(model, guide, x)
    assert after - before == pytest.approx(N * 2.0 * hit.terms["rate/z2"], rel=1e-5)


def flat_model(x):
    with pyro.plate("data", size=N, subsample=torch.arange(B)):
        a = pyro.sample("a", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        b = pyro.sample("b", dist.Normal(torch.zeros(1), 1.0).to_event(1))
        c = pyro.sample("c", dist.Normal(torch.zeros(1), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(torch.cat([a, b, c], -1), 1.0).to_event(1), obs=x)


def flat_guide(x):
    with pyro.plate("data", size=N, subsample=torch.arange(B)):
        with group("style"):
            pyro.sample("a", dist.Normal(x[:, :2], 0.5).to_event(1), infer={"group": "shape"})
            pyro.sample("b", dist.Normal(x[:, 2:3], 0.5).to_event(1))
        pyro.sample("c", dist.Normal(x[:, 3:], 0.5).to_event(1))


def test_group_keys_in_a_flat_model():
    x = torch.randn(B, 4)
    hit = HITLoss({"style": 2.0, "style/shape": 5.0, "c": 0.25, "b": 3.0})
    hit.loss(flat_model, flat_guide, x)
    # Own name first, then the most specific group, then default_beta.
    assert (hit.terms["beta/a"], hit.terms["beta/b"], hit.terms["beta/c"]) == (5.0, 3.0, 0.25)
    hit = HITLoss({"style": 2.0}, default_beta=0.0)
    hit.loss(flat_model, flat_guide, x)
    assert (hit.terms["beta/a"], hit.terms["beta/b"], hit.terms["beta/c"]) == (2.0, 2.0, 0.0)


def test_global_latent_rates_are_totals():
    x = torch.randn(B, 2)

    def model(x):
        w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z + w, 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.sample("w", dist.Normal(torch.ones(2), 0.5).to_event(1))
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("z", dist.Normal(x, 0.5).to_event(1))

    trace = poutine.trace(guide).get_trace(x)
    model_r, guide_r = poutine.replay(model, trace=trace), poutine.replay(guide, trace=trace)
    hit = HITLoss({"w": 3.0, "z": 2.0})
    loss = hit.loss(model_r, guide_r, x)
    kl_w = kl_divergence(dist.Normal(torch.ones(2), 0.5), dist.Normal(torch.zeros(2), 1.0)).sum().item()
    assert hit.terms["rate/w"] == pytest.approx(kl_w, rel=1e-6)
    expected = N * (hit.terms["distortion"] + 2.0 * hit.terms["rate/z"]) + 3.0 * kl_w
    assert loss == pytest.approx(expected, rel=1e-5)
    assert HITLoss().loss(model_r, guide_r, x) == pytest.approx(
        TraceMeanField_ELBO().loss(model_r, guide_r, x), rel=1e-6
    )


def test_dataset_size_scales_an_unsubsampled_plate():
    chain = Chain(2, plate_size=None)
    subsampled = Chain(2)
    subsampled.load_state_dict(chain.state_dict())
    x = torch.randn(B, D)
    trace = poutine.trace(subsampled.guide).get_trace(x)
    expected = HITLoss().loss(
        poutine.replay(subsampled.model, trace=trace),
        poutine.replay(subsampled.guide, trace=trace),
        x,
    )
    plain_model, plain_guide = (
        poutine.replay(chain.model, trace=trace),
        poutine.replay(chain.guide, trace=trace),
    )
    assert HITLoss(dataset_size=N).loss(plain_model, plain_guide, x) == pytest.approx(expected, rel=1e-6)
    assert HITLoss().loss(plain_model, plain_guide, x) == pytest.approx(expected * B / N, rel=1e-6)
    with pytest.raises(ValueError, match="dataset_size=7"):
        HITLoss(dataset_size=7).loss(subsampled.model, subsampled.guide, x)


def test_masked_data_points_count_as_zero():
    chain = Chain(2)
    x = torch.randn(B, D)
    mask = torch.tensor([True, False] * (B // 2))
    model, guide, _ = replayed(chain, x)
    hit = HITLoss()
    masked = hit.loss(poutine.mask(model, mask=mask), poutine.mask(guide, mask=mask), x)
    masked_terms = dict(hit.terms)
    expected = TraceMeanField_ELBO().loss(poutine.mask(model, mask=mask), poutine.mask(guide, mask=mask), x)
    assert masked == pytest.approx(expected, rel=1e-6)
    hit.loss(model, guide, x)
    # Half the data points are masked out: the rates are means over all B with zeros.
    assert masked_terms["rate/z2"] < hit.terms["rate/z2"]


@pytest.mark.parametrize(
    "betas, error, match",
    [
        ({"z3": 1.0}, ValueError, r"\['z3'\].*latent sites are \['z2', 'z1'\]"),
        ({"x": 1.0}, ValueError, "not latent sites"),
        ({"z1": -0.5}, ValueError, r"finite and >= 0 but got -0.5"),
        ({"z1": float("nan")}, ValueError, "finite"),
        ({"z1": float("inf")}, ValueError, "finite"),
        ({"z1": "big"}, TypeError, "a number"),
        (lambda: [1.0, 2.0], TypeError, "mapping"),
    ],
)
def test_bad_betas(betas, error, match):
    chain = Chain(2)
    x = torch.randn(B, D)
    with pytest.raises(error, match=match):
        HITLoss(betas).loss(chain.model, chain.guide, x)


def test_bad_arguments():
    with pytest.raises(TypeError, match="mapping site -> weight"):
        HITLoss([1.0, 2.0])
    with pytest.raises(ValueError, match="default_beta"):
        HITLoss(default_beta=-1.0)
    with pytest.raises(ValueError, match="dataset_size"):
        HITLoss(dataset_size=0)
    with pytest.raises(ValueError, match="concrete_scoring"):
        HITLoss(concrete_scoring="hard")


def test_non_finite_loss_names_the_site():
    chain = Chain(1)
    x = torch.randn(B, D)
    x[0, 0] = float("nan")
    with pyro.validation_enabled(False), pytest.raises(NonFiniteLossError, match="z1"):
        HITLoss().loss(chain.model, chain.guide, x)


def test_guide_site_missing_from_the_model():
    def guide(x):
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("extra", dist.Normal(torch.zeros(B), 1.0))

    def model(x):
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("x", dist.Normal(torch.zeros(B), 1.0), obs=x[:, 0])

    with (
        pyro.validation_enabled(False),
        pytest.raises(ValueError, match="'extra' is not in the model"),
    ):
        HITLoss().loss(model, guide, torch.randn(B, D))


def test_a_progressive_schedule_plugs_in():
    from pyro_hfvae.infer.progressive import ProgressiveSchedule

    chain = Chain(2)
    x = torch.randn(B, D)
    schedule = ProgressiveSchedule(["z2", "z1"], steps_per_level=2, fade_in_steps=1)
    hit = HITLoss(schedule)
    svi = SVI(chain.model, chain.guide, Adam({"lr": 1e-3}), hit)
    seen, expected = [], []
    for _ in range(5):
        expected.append(schedule.betas())
        svi.step(x)
        seen.append({name: hit.terms[f"beta/{name}"] for name in ("z2", "z1")})
        schedule.step()
    assert seen == expected
    assert seen[0] != seen[-1]  # the weights did change over the steps
