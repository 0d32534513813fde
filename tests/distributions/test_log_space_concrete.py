import pytest
import torch
from pyro.distributions import Independent, Normal, RelaxedOneHotCategorical
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from pyro_hfvae.distributions.util import log_space_concrete, variable_ndim


def concrete(batch_shape=(5,), num_classes=3, temperature=0.7):
    torch.manual_seed(0)
    logits = torch.randn(batch_shape + (num_classes,), dtype=torch.float64)
    return RelaxedOneHotCategorical(torch.tensor(temperature, dtype=torch.float64), logits=logits)


def exp_concrete_log_density(logits, temperature, log_value):
    """The ExpConcrete density of Maddison et al. (2017), written out."""
    num_classes = logits.shape[-1]
    score = logits - temperature * log_value
    return (torch.lgamma(torch.tensor(float(num_classes), dtype=logits.dtype)) + (num_classes - 1) * temperature.log()
            + score.sum(-1) - num_classes * score.logsumexp(-1))


def test_density_is_the_concrete_density_times_the_jacobian():
    fn = concrete()
    value = fn.sample()
    out = log_space_concrete(fn)
    assert isinstance(out, ExpRelaxedCategorical)
    assert out.batch_shape == fn.batch_shape and out.event_shape == fn.event_shape
    expected = fn.log_prob(value) + value.log().sum(-1)  # p(log x) = p(x) |dx / dlog x|
    assert torch.allclose(out.log_prob(value.log()), expected, atol=1e-10)
    assert torch.allclose(out.log_prob(value.log()),
                          exp_concrete_log_density(fn.logits, fn.temperature, value.log()), atol=1e-10)


@pytest.mark.parametrize("wrap", ["independent", "expanded", "expanded_independent"])
def test_wrappers_keep_shapes_and_variables(wrap):
    fn = concrete(batch_shape=(4,))
    if wrap == "independent":
        fn = Independent(concrete(batch_shape=(6, 4)), 1)
    elif wrap == "expanded":
        fn = fn.expand((2, 4))
    else:
        fn = Independent(concrete(batch_shape=(4,)).expand((6, 4)), 1)
    out = log_space_concrete(fn)
    assert out.batch_shape == fn.batch_shape and out.event_shape == fn.event_shape
    assert variable_ndim(out) == variable_ndim(fn)
    value = fn.sample()
    jacobian = value.log().sum(-1)
    if wrap != "expanded":
        jacobian = jacobian.sum(-1)
    assert torch.allclose(out.log_prob(value.log()), fn.log_prob(value) + jacobian, atol=1e-9)


def test_other_distributions_are_returned_unchanged():
    normal = Normal(torch.zeros(3), 1.0).to_event(1)
    assert log_space_concrete(normal) is normal
    independent_normal = Independent(Normal(torch.zeros(2, 3), 1.0), 2)
    assert log_space_concrete(independent_normal) is independent_normal


def test_confident_samples_stay_finite_in_float32():
    logits = 60.0 * torch.randn(100, 5)
    fn = RelaxedOneHotCategorical(torch.tensor(0.5), logits=logits)
    assert (fn.sample() == 0).any()  # on the simplex, components underflow
    out = log_space_concrete(fn)
    log_value = out.sample()
    assert torch.isfinite(log_value).all() and torch.isfinite(out.log_prob(log_value)).all()
