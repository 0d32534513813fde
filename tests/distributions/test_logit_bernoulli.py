# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_hfvae.distributions import LogitBernoulli
from pyro_hfvae.ops.logsumexp import EXP_FLOOR

# Logit ranges: moderate, torch's slow paths (log1p near e^-25, exp underflow), both signs.
RANGES = [(-10.0, 10.0), (-30.0, -20.0), (20.0, 30.0), (-300.0, -100.0), (100.0, 300.0)]


def _logits(low, high, shape, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)).requires_grad_()


def _closed_form(logits, value):
    # x l - softplus(l) in float64 with log1p: an independent reference.
    logits, value = logits.detach().double(), value.double()
    return value * logits - logits.clamp_min(0) - torch.log1p(torch.exp(-logits.abs()))


@pytest.mark.parametrize("low,high", RANGES)
@pytest.mark.parametrize("grey", [False, True])
def test_float64_values_and_gradients(low, high, grey):
    logits = _logits(low, high, (7, 5), torch.float64)
    generator = torch.Generator().manual_seed(1)
    value = torch.rand(7, 5, generator=generator, dtype=torch.float64)
    value = value if grey else (value > 0.5).double()
    value.requires_grad_()
    coef = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    # Grey levels lie outside the Boolean support: the image models score them without validation.
    out = LogitBernoulli(logits=logits, validate_args=False).log_prob(value)
    expected = torch.distributions.Bernoulli(logits=logits, validate_args=False).log_prob(value)
    torch.testing.assert_close(out, expected, rtol=1e-15, atol=1e-13)
    torch.testing.assert_close(out.detach(), _closed_form(logits, value.detach()), rtol=1e-15, atol=1e-13)
    grads = torch.autograd.grad((out * coef).sum(), (logits, value))
    # Independent: d/dl = x - sigmoid(l), d/dx = l.
    torch.testing.assert_close(grads[0], coef * (value.detach() - torch.sigmoid(logits.detach())), rtol=0,
                               atol=1e-15 + abs(coef).max().item() * torch.exp(torch.tensor(EXP_FLOOR)).item())
    torch.testing.assert_close(grads[1], coef * logits.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("low,high", RANGES)
def test_float32_matches_torch(low, high):
    logits = _logits(low, high, (64, 4096), torch.float32)
    value = (torch.rand(64, 4096, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    out = LogitBernoulli(logits=logits).log_prob(value)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(value)
    # log(1 + e) instead of log1p(e): the rounding of 1 + e (6e-8) plus that of the result (1e-6 at |l| = 10).
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    (grad,) = torch.autograd.grad(out.sum(), logits)
    (expected_grad,) = torch.autograd.grad(expected.sum(), logits)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-7)


def test_broadcasting_and_integer_values():
    logits = _logits(-5.0, 5.0, (3, 1, 4), torch.float64)
    value = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0]])  # (2, 4) broadcast against (3, 1, 4)
    out = LogitBernoulli(logits=logits).log_prob(value)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(value.double())
    assert out.shape == (3, 2, 4)
    torch.testing.assert_close(out, expected, rtol=1e-15, atol=1e-13)
    (grad,) = torch.autograd.grad(out.sum(), logits)
    (expected_grad,) = torch.autograd.grad(expected.sum(), logits)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-15, atol=1e-15)


def test_probs_expand_and_validation():
    probs = torch.tensor([0.2, 0.9], dtype=torch.float64)
    fn = LogitBernoulli(probs=probs)
    torch.testing.assert_close(fn.log_prob(torch.tensor([0.0, 1.0], dtype=torch.float64)), torch.log(torch.tensor(
        [0.8, 0.9], dtype=torch.float64)), rtol=1e-14, atol=0)
    expanded = fn.expand((3, 2))
    assert type(expanded) is LogitBernoulli and expanded.batch_shape == (3, 2)
    with pytest.raises(ValueError, match="support"):
        LogitBernoulli(logits=torch.zeros(2), validate_args=True).log_prob(torch.tensor([0.5, 2.0]))


def test_trace_elbo_matches_pyro_bernoulli():
    torch.manual_seed(0)
    x = (torch.rand(6, 1, 4, 4) > 0.5).float()
    decoder = torch.nn.Linear(2, 16).double()

    def model(likelihood):
        with pyro.plate("data", 6):
            z = pyro.sample("z", dist.Normal(torch.zeros(6, 2, dtype=torch.float64), 1.0).to_event(1))
            logits = 40 * decoder(z).reshape(6, 1, 4, 4)  # large logits: both slow paths of torch's
            pyro.sample("x", likelihood(logits=logits).to_event(3), obs=x.double())

    def guide(likelihood):
        loc = pyro.param("loc", torch.zeros(6, 2, dtype=torch.float64))
        with pyro.plate("data", 6):
            pyro.sample("z", dist.Normal(loc, 0.5).to_event(1))

    losses = {}
    for likelihood in (dist.Bernoulli, LogitBernoulli):
        pyro.clear_param_store()
        pyro.set_rng_seed(1)
        loss = Trace_ELBO().differentiable_loss(model, guide, likelihood)
        grads = torch.autograd.grad(loss, [pyro.param("loc").unconstrained(), *decoder.parameters()])
        losses[likelihood] = (loss.detach(), grads)
    torch.testing.assert_close(losses[LogitBernoulli][0], losses[dist.Bernoulli][0], rtol=1e-14, atol=1e-11)
    for got, expected in zip(losses[LogitBernoulli][1], losses[dist.Bernoulli][1]):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
