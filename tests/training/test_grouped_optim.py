# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import pyro
import pyro.optim
import pytest
import torch

from pyro_hfvae.training.grouped_optim import GroupedOptim

OPTIMIZERS = {
    "adam": (torch.optim.Adam, {"lr": 0.05}),
    "adam_fused": (torch.optim.Adam, {"lr": 0.05, "fused": True}),
    "adam_foreach": (torch.optim.Adam, {"lr": 0.05, "foreach": True, "weight_decay": 0.1}),
    "clipped_adam": (pyro.optim.clipped_adam.ClippedAdam, {"lr": 0.05, "clip_norm": 0.5, "lrd": 0.99}),
    "sgd_momentum": (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, {"lr": 0.05}),
}


def _params() -> list[torch.Tensor]:
    """Three Pyro parameters (one constrained) with a fixed start, as unconstrained tensors."""
    pyro.clear_param_store()
    generator = torch.Generator().manual_seed(0)
    pyro.param("a", torch.randn(3, 4, generator=generator))
    pyro.param("b", torch.randn(5, generator=generator))
    pyro.param("c", torch.rand(2, generator=generator) + 0.5, constraint=torch.distributions.constraints.positive)
    return [pyro.param(name).unconstrained() for name in ("a", "b", "c")]


def _set_grads(params: list[torch.Tensor], step: int, skip: str | None = None) -> None:
    generator = torch.Generator().manual_seed(100 + step)
    names = pyro.get_param_store().param_name
    for p in params:
        grad = torch.randn(p.shape, generator=generator)
        p.grad = None if names(p) == skip else grad


def _run(optim, steps: range, skip_every: int = 0) -> dict[str, torch.Tensor]:
    params = [pyro.param(name).unconstrained() for name in ("a", "b", "c")]
    for step in steps:
        skip = "b" if skip_every and step % skip_every == 0 else None
        _set_grads(params, step, skip)
        optim(set(params))
    return {name: pyro.param(name).detach().clone() for name in ("a", "b", "c")}


def _same_state(first: dict, second: dict) -> bool:
    def same(u, v):
        if isinstance(u, dict):
            return u.keys() == v.keys() and all(same(u[k], v[k]) for k in u)
        if isinstance(u, (list, tuple)):
            return len(u) == len(v) and all(same(a, b) for a, b in zip(u, v))
        return torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v

    return same(first, second)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_steps_and_state_equal_pyro_optim(name):
    constructor, args = OPTIMIZERS[name]
    _params()
    reference = pyro.optim.PyroOptim(constructor, args)
    expected = _run(reference, range(6), skip_every=4)  # "b" has no gradient at steps 0 and 4
    expected_state = reference.get_state()
    _params()
    grouped = GroupedOptim(constructor, args)
    actual = _run(grouped, range(6), skip_every=4)
    assert len(grouped.optimizers) == 1
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key
    assert _same_state(grouped.get_state(), expected_state)


@pytest.mark.parametrize("name", ["adam_fused", "clipped_adam", "sgd_momentum"])
@pytest.mark.parametrize("direction", ["pyro_to_grouped", "grouped_to_pyro"])
def test_states_are_interchangeable(name, direction):
    constructor, args = OPTIMIZERS[name]
    _params()
    reference = pyro.optim.PyroOptim(constructor, args)
    expected = _run(reference, range(8))

    _params()
    first, second = GroupedOptim(constructor, args), pyro.optim.PyroOptim(constructor, args)
    if direction == "pyro_to_grouped":
        first, second = second, first
    _run(first, range(4))
    second.set_state(first.get_state())
    actual = _run(second, range(4, 8))
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def test_only_the_parameters_passed_are_stepped():
    params = _params()
    before = {name: pyro.param(name).detach().clone() for name in ("a", "b", "c")}
    optim = GroupedOptim(torch.optim.SGD, {"lr": 0.5})
    _set_grads(params, 0)
    optim(params[:2])  # "c" has a gradient but is not passed
    assert not torch.equal(pyro.param("a"), before["a"])
    assert not torch.equal(pyro.param("b"), before["b"])
    assert torch.equal(pyro.param("c"), before["c"])
    assert sorted(optim.get_state()) == ["a", "b"]


def test_per_parameter_arguments_make_separate_groups():
    def args(name):
        return {"lr": 0.1 if name == "b" else 0.01}

    _params()
    expected = _run(pyro.optim.PyroOptim(torch.optim.Adam, args), range(5))
    _params()
    grouped = GroupedOptim(torch.optim.Adam, args)
    actual = _run(grouped, range(5))
    assert sorted(len(o.param_groups[0]["params"]) for o in grouped.optimizers) == [1, 2]
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def test_a_restored_learning_rate_is_kept():
    _params()
    grouped = GroupedOptim(torch.optim.Adam, {"lr": 0.01})
    _run(grouped, range(2))
    state = grouped.get_state()
    state["b"]["param_groups"][0]["lr"] = 0.2
    _params()
    resumed = GroupedOptim(torch.optim.Adam, {"lr": 0.01})
    resumed.set_state(state)
    _run(resumed, range(2, 3))
    lrs = {pyro.get_param_store().param_name(p): o.param_groups[0]["lr"] for p, o in resumed.optim_objs.items()}
    assert lrs == {"a": 0.01, "b": 0.2, "c": 0.01}
    assert len(resumed.optimizers) == 2


def test_clip_args_are_applied_per_parameter():
    _params()
    expected = _run(pyro.optim.PyroOptim(torch.optim.SGD, {"lr": 0.1}, {"clip_norm": 0.3}), range(3))
    _params()
    actual = _run(GroupedOptim(torch.optim.SGD, {"lr": 0.1}, {"clip_norm": 0.3}), range(3))
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def test_schedulers_are_refused():
    with pytest.raises(TypeError, match="expected a torch.optim.Optimizer class"):
        GroupedOptim(torch.optim.lr_scheduler.StepLR, {"optimizer": torch.optim.SGD, "optim_args": {"lr": 0.1}})
    scheduler = pyro.optim.StepLR({"optimizer": torch.optim.SGD, "optim_args": {"lr": 0.1}, "step_size": 1})
    with pytest.raises(TypeError, match="expected a pyro.optim optimiser wrapping a torch optimiser"):
        GroupedOptim.from_pyro_optim(scheduler)


def test_from_pyro_optim_keeps_the_arguments():
    grouped = GroupedOptim.from_pyro_optim(pyro.optim.Adam({"lr": 0.02, "betas": (0.8, 0.9)}))
    params = _params()
    _set_grads(params, 0)
    grouped(params)
    (optimizer,) = grouped.optimizers
    assert optimizer.param_groups[0]["lr"] == 0.02 and tuple(optimizer.param_groups[0]["betas"]) == (0.8, 0.9)
