import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_hfvae.distributions.util import concrete_log_value
from pyro_hfvae.poutine import ConcreteLogValueMessenger

TEMPERATURE = torch.tensor(0.5)


def _program(wrap: str, logits: torch.Tensor):
    def program():
        fn = dist.RelaxedOneHotCategorical(TEMPERATURE, logits=logits)
        if wrap == "to_event":
            fn = fn.to_event(1)
        elif wrap == "mask":
            fn = fn.mask(torch.tensor([True, False, True, True]))
        if wrap == "particles":
            with pyro.plate("particles", 3, dim=-2), pyro.plate("data", 4, dim=-1):
                return pyro.sample("y", fn)
        with pyro.plate("data", 4, dim=-1):
            return pyro.sample("y", fn)

    return program


@pytest.mark.parametrize("wrap", ["plain", "to_event", "mask", "particles"])
@pytest.mark.parametrize("logit_scale", [1.0, 100.0])
def test_values_are_pyros_own_and_keep_their_logarithm(wrap, logit_scale):
    shape = (4, 2, 3) if wrap == "to_event" else (4, 3)
    logits = logit_scale * torch.randn(shape, generator=torch.Generator().manual_seed(0))
    program = _program(wrap, logits)
    pyro.set_rng_seed(1)
    expected = poutine.trace(program).get_trace().nodes["y"]["value"]
    pyro.set_rng_seed(1)
    value = poutine.trace(ConcreteLogValueMessenger()(program)).get_trace().nodes["y"]["value"]
    assert torch.equal(value, expected)  # the same draw, bit for bit
    log_value = value._concrete_log_value
    assert torch.equal(log_value.exp(), value)
    assert torch.isfinite(log_value).all()
    assert torch.allclose(log_value.logsumexp(-1), torch.zeros(()), atol=1e-5)  # a point of the simplex
    kept = value > 1e-30
    assert torch.allclose(log_value[kept], value[kept].log(), rtol=1e-5, atol=1e-5)
    if logit_scale == 100.0:
        assert (value == 0).any() and (log_value < -100).any()  # what the simplex lost
        assert torch.equal(concrete_log_value(value), log_value)
        assert not torch.equal(concrete_log_value(value.clone()), log_value)  # without it: clamped


def test_other_sites_are_left_alone():
    logits = torch.randn(4, 3)

    def program():
        with pyro.plate("data", 4):
            pyro.sample("st", dist.RelaxedOneHotCategoricalStraightThrough(TEMPERATURE, logits=logits))
            pyro.sample("obs", dist.RelaxedOneHotCategorical(TEMPERATURE, logits=logits),
                        obs=torch.full((4, 3), 1 / 3))
            pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("set", dist.RelaxedOneHotCategorical(TEMPERATURE, logits=logits))

    conditioned = poutine.condition(program, data={"set": torch.full((4, 3), 1 / 3)})
    trace = poutine.trace(ConcreteLogValueMessenger()(conditioned)).get_trace()
    for name in ["st", "obs", "z", "set"]:
        assert not hasattr(trace.nodes[name]["value"], "_concrete_log_value"), name
    assert trace.nodes["st"]["value"].eq(1).sum(-1).eq(1).all()  # still one-hot
