"""
A confident Concrete posterior (logits that differ by tens) draws samples whose small
components underflow on the simplex. The objectives score every Concrete latent at the
sample's exact logarithm: their terms and gradients in float32 equal a float64 brute force
written out in log space. On the simplex (clamped) the KL read -178 nats instead of 266 (256
data points, logits 100 x N(0, 1), float32).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_hfvae import HFVAELoss, HITLoss, group
from pyro_hfvae.poutine import ConcreteLogValueMessenger

B, K, TEMPERATURE = 16, 3, 0.66


def exp_concrete_log_density(logits, log_value):
    # Maddison et al. (2017, eq. 26), for every pair of leading dims that broadcast.
    log_probs = logits - logits.logsumexp(-1, keepdim=True)
    scores = log_probs - TEMPERATURE * log_value
    return math.lgamma(K) + (K - 1) * math.log(TEMPERATURE) + scores.sum(-1) - K * scores.logsumexp(-1)


def model_guide(logits, weight, x):
    temperature = torch.tensor(TEMPERATURE)

    def model():
        with pyro.plate("data", B):
            y = pyro.sample("y", dist.RelaxedOneHotCategorical(temperature, logits=torch.zeros(B, K)))
            pyro.sample("x", dist.Normal(y @ weight, 1.0), obs=x)

    def guide():
        with pyro.plate("data", B), group("class"):
            pyro.sample("y", dist.RelaxedOneHotCategorical(temperature, logits=logits))

    return model, guide


def brute_force(logits, weight, x, log_value, alpha):
    """The objective's terms per data point (double loop over the batch) and its loss, in float64."""
    logits, weight, x = logits.double(), weight.double(), x.double()
    # The sample as a function of the logits, with the same Gumbel noise: (logits + g) / tau is
    # log_value up to a constant per row.
    y = ((logits - logits.detach()) / TEMPERATURE + log_value.double()).log_softmax(-1)
    log_q = torch.stack([exp_concrete_log_density(logits[i], y[i]) for i in range(B)])
    log_p = torch.stack([exp_concrete_log_density(torch.zeros(K, dtype=torch.float64), y[i]) for i in range(B)])
    log_q_marginal = torch.stack([
        torch.stack([exp_concrete_log_density(logits[j], y[i]) for j in range(B)]).logsumexp(0) - math.log(B)
        for i in range(B)
    ])
    log_likelihood = -0.5 * (x - y.exp() @ weight) ** 2 - 0.5 * math.log(2 * math.pi)
    mutual_info = log_q - log_q_marginal
    dimwise_kl = log_q_marginal - log_p
    objective = log_likelihood - alpha * mutual_info - dimwise_kl
    terms = {"kl": (log_q - log_p).mean(), "mutual_info": mutual_info.mean(), "dimwise_kl": dimwise_kl.mean(),
             "elbo": (log_likelihood - log_q + log_p).mean(), "objective": objective.mean()}
    return terms, -objective.sum()


@pytest.mark.parametrize("logit_scale", [3.0, 30.0, 100.0])
@pytest.mark.parametrize("loss_name", ["hfvae", "hfvae-alpha", "hfvae-fused", "hit"])
def test_terms_and_gradients_equal_a_log_space_brute_force(logit_scale, loss_name):
    generator = torch.Generator().manual_seed(0)
    logits = (logit_scale * torch.randn(B, K, generator=generator)).requires_grad_()
    weight = torch.randn(K, generator=generator)
    x = torch.randn(B, generator=generator)
    model, guide = model_guide(logits, weight, x)
    alpha = 2.0 if loss_name == "hfvae-alpha" else 1.0
    if loss_name == "hit":
        loss_fn = HITLoss()
    else:
        kernel = "fused" if loss_name == "hfvae-fused" else "generic"
        loss_fn = HFVAELoss(alpha, 1.0, 1.0, dataset_size=B, kernel=kernel)
    pyro.set_rng_seed(3)
    loss = loss_fn.differentiable_loss(model, guide)
    pyro.set_rng_seed(3)
    value = poutine.trace(ConcreteLogValueMessenger()(guide)).get_trace().nodes["y"]["value"]
    if logit_scale == 100.0:
        assert (value == 0).any()  # the simplex lost these components
    expected_terms, expected_loss = brute_force(logits, weight, x, value._concrete_log_value.detach(), alpha)
    terms = loss_fn.terms
    if loss_name == "hit":
        terms = {"kl": terms["rate"], "elbo": terms["elbo"]}
    for name, value in terms.items():
        if name in expected_terms:
            assert value == pytest.approx(expected_terms[name].item(), rel=1e-4, abs=1e-3), name
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-4, abs=1e-2)
    grad = torch.autograd.grad(loss, logits)[0]
    expected_grad = torch.autograd.grad(expected_loss, logits)[0]
    assert torch.allclose(grad, expected_grad, rtol=1e-3, atol=1e-3 * expected_grad.abs().max().item())
