import math

import pytest
import torch
from pyro.distributions import Independent, Normal, RelaxedOneHotCategorical
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from pyro_hfvae.distributions.util import (
    concrete_log_value,
    distribution_mask,
    log_space_concrete,
    variable_log_prob,
    variable_ndim,
)


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


@pytest.mark.parametrize("wrap", ["mask", "mask_independent"])
def test_masks_are_kept(wrap):
    mask = torch.tensor([True, False, True, True])
    if wrap == "mask":
        fn = concrete(batch_shape=(4,)).mask(mask)
    else:
        fn = Independent(concrete(batch_shape=(2, 4)).mask(mask), 1)
    out = log_space_concrete(fn)
    assert torch.equal(distribution_mask(out), distribution_mask(fn))
    value = fn.sample()
    jacobian = value.log().sum(-1)
    masked = variable_log_prob(fn, value, 0)
    expected = masked + (jacobian * mask).sum(-1) if wrap == "mask_independent" else masked + jacobian * mask
    assert torch.allclose(variable_log_prob(out, value.log(), 0), expected, atol=1e-9)


def test_argmax_scoring_is_the_same_in_log_space():
    fn = Independent(concrete(batch_shape=(6, 2)), 1)
    value = fn.sample()
    in_log_space = variable_log_prob(log_space_concrete(fn), value.log(), 0, concrete="argmax")
    assert torch.equal(in_log_space, variable_log_prob(fn, value, 0, concrete="argmax"))
    assert torch.allclose(in_log_space, fn.base_dist.logits.gather(-1, value.argmax(-1, keepdim=True))[..., 0].sum(-1))


def test_concrete_log_value_is_kept_or_clamped():
    value = torch.tensor([0.75, 0.25, 0.0])
    clamped = concrete_log_value(value)
    assert torch.allclose(clamped[:2], value[:2].log()) and clamped[2] == 0.5 * math.log(torch.finfo().tiny)
    value._concrete_log_value = torch.tensor([math.log(0.75), math.log(0.25), -200.0])
    assert concrete_log_value(value) is value._concrete_log_value
