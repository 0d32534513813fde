import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_hfvae import HFVAELoss
from pyro_hfvae.models.conv_hfvae import ConvHFVAE


def concrete_log_density(logits, temperature, value):
    """The Concrete density of Maddison et al. (2017), eq. (5), written out."""
    k = logits.size(-1)
    log_alpha = logits.log_softmax(-1)
    return (
        math.lgamma(k)
        + (k - 1) * math.log(temperature)
        + (log_alpha - (temperature + 1) * value.log()).sum(-1)
        - k * (log_alpha - temperature * value.log()).logsumexp(-1)
    )


@pytest.mark.parametrize("learn_class_prior", [False, True])
def test_model_scores_the_class_under_its_prior(learn_class_prior):
    vae = ConvHFVAE((1, 8, 8), num_classes=4, style_dim=2, temperature=0.5, learn_class_prior=learn_class_prior)
    if learn_class_prior:
        with torch.no_grad():
            vae.class_prior_logits.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    x = torch.rand(3, 1, 8, 8)
    trace = pyro.poutine.trace(vae.model).get_trace(x)
    site = trace.nodes["y"]
    logits = vae.class_prior_logits.detach() if learn_class_prior else torch.zeros(4)
    expected = concrete_log_density(logits, 0.5, site["value"].double())
    assert torch.allclose(site["fn"].log_prob(site["value"]).double(), expected, atol=1e-4)


def test_learned_class_prior_only_adds_its_logits_to_the_state():
    uniform = ConvHFVAE((1, 8, 8), num_classes=3, style_dim=2)
    learned = ConvHFVAE((1, 8, 8), num_classes=3, style_dim=2, learn_class_prior=True)
    assert set(learned.state_dict()) - set(uniform.state_dict()) == {"class_prior_logits"}
    assert learned.sample(5).shape == (5, 1, 8, 8)


def _prior_gradient(vae, loss, x):
    vae.zero_grad()
    pyro.set_rng_seed(1)
    loss.differentiable_loss(vae.model, vae.guide, x).backward()
    return vae.class_prior_logits.grad.clone()


@pytest.mark.parametrize("beta,gamma", [(1.0, 1.0), (2.0, 3.0)])
def test_learned_class_prior_gradient_is_the_elbos(beta, gamma):
    # The prior's logits enter only through log p(y), which every weight of the decomposition
    # leaves at 1: the gradient is Trace_ELBO's on the same samples.
    pyro.set_rng_seed(0)
    vae = ConvHFVAE((1, 8, 8), num_classes=3, style_dim=2, learn_class_prior=True)
    with torch.no_grad():
        vae.class_prior_logits.copy_(torch.tensor([0.3, -0.2, 1.0]))
    x = torch.rand(16, 1, 8, 8).round()
    expected = _prior_gradient(vae, Trace_ELBO(), x)
    assert expected.abs().sum() > 1
    actual = _prior_gradient(vae, HFVAELoss(beta=beta, gamma=gamma, dataset_size=16), x)
    assert torch.allclose(actual, expected, atol=1e-4)
    # Scored by the argmax, log p(y) is the categorical's: minus the sum of one-hot minus softmax.
    pyro.set_rng_seed(1)
    y = pyro.poutine.trace(vae.guide).get_trace(x).nodes["y"]["value"]
    one_hot = torch.nn.functional.one_hot(y.argmax(-1), 3).float()
    expected_argmax = -(one_hot - vae.class_prior_logits.detach().softmax(-1)).sum(0)
    loss = HFVAELoss(beta=beta, gamma=gamma, dataset_size=16, concrete_scoring="argmax")
    assert torch.allclose(_prior_gradient(vae, loss, x), expected_argmax, atol=1e-4)


def test_learned_class_prior_needs_a_class():
    with pytest.raises(ValueError, match="expected num_classes >= 2 with learn_class_prior"):
        ConvHFVAE((1, 8, 8), num_classes=0, style_dim=2, learn_class_prior=True)
    with pytest.raises(ValueError, match="it has no class prior"):
        ConvHFVAE((1, 8, 8), num_classes=0, style_dim=2).class_prior()


@pytest.mark.parametrize("concrete_scoring", ["relaxed", "argmax"])
def test_the_class_prior_reaches_the_networks_only_through_the_relaxed_density(concrete_scoring):
    pyro.set_rng_seed(0)
    vae = ConvHFVAE((1, 8, 8), num_classes=3, style_dim=2, learn_class_prior=True)
    x = torch.rand(16, 1, 8, 8).round()
    loss = HFVAELoss(beta=2.0, dataset_size=16, concrete_scoring=concrete_scoring)
    gradients = []
    for logits in (torch.zeros(3), torch.tensor([2.0, -1.0, 0.0])):
        with torch.no_grad():
            vae.class_prior_logits.copy_(logits)
        _prior_gradient(vae, loss, x)
        networks = [p for name, p in vae.named_parameters() if name != "class_prior_logits"]
        gradients.append(torch.cat([p.grad.flatten() for p in networks]))
    same = torch.allclose(gradients[0], gradients[1], atol=1e-6)
    assert same == (concrete_scoring == "argmax")
