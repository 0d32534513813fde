import math

import pyro.distributions as dist
import pytest
import torch
from torch.distributions import RelaxedOneHotCategorical
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from pyro_hfvae.distributions.util import concrete_log_prob, variable_log_prob
from pyro_hfvae.ops import fused_marginals
from pyro_hfvae.ops.fused_marginals import concrete_pairwise_marginals, fused_table, normal_pairwise_marginals
from pyro_hfvae.ops.pairwise import pairwise_log_prob
from pyro_hfvae.poutine.plate_layout import PlateLayout


def _inputs(particles, rows, batch, num_variables, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    value = torch.randn(particles, rows, num_variables, generator=generator, dtype=dtype).requires_grad_()
    loc = torch.randn(particles, batch, num_variables, generator=generator, dtype=dtype).requires_grad_()
    scale = (0.2 + torch.rand(particles, batch, num_variables, generator=generator, dtype=dtype)).requires_grad_()
    log_weights = torch.randn(rows, batch, generator=generator, dtype=dtype).log_softmax(-1)
    return value, loc, scale, log_weights


def _brute_force(value, loc, scale, log_weights):
    # An independent loop over (p, r, b, v) with the Normal density written out.
    P, R, V = value.shape
    B = loc.shape[1]
    variables = torch.empty(P, R, V, dtype=value.dtype)
    site = torch.empty(P, R, B, dtype=value.dtype)
    for p in range(P):
        for r in range(R):
            for b in range(B):
                terms = [-0.5 * ((value[p, r, v] - loc[p, b, v]) / scale[p, b, v]) ** 2 - torch.log(scale[p, b, v])
                         - 0.5 * math.log(2 * math.pi) for v in range(V)]
                site[p, r, b] = sum(terms)
            for v in range(V):
                terms = torch.stack([-0.5 * ((value[p, r, v] - loc[p, b, v]) / scale[p, b, v]) ** 2
                                     - torch.log(scale[p, b, v]) - 0.5 * math.log(2 * math.pi) + log_weights[r, b]
                                     for b in range(B)])
                variables[p, r, v] = torch.logsumexp(terms, 0)
    return variables, site


@pytest.mark.parametrize("particles,rows,batch,num_variables", [(1, 3, 3, 1), (2, 2, 5, 3), (1, 4, 4, 2)])
def test_values_and_gradients_match_brute_force(particles, rows, batch, num_variables):
    value, loc, scale, log_weights = _inputs(particles, rows, batch, num_variables, torch.float64)
    _check_against_brute_force(normal_pairwise_marginals, _brute_force, (value, loc, scale, log_weights),
                               (value, loc, scale))


def _check_against_brute_force(fused, brute_force, args, wrt):
    """Both outputs of ``fused`` and ``brute_force`` on ``args``, and gradients of a random projection wrt ``wrt``."""
    value, log_weights = args[0], args[-1]
    (particles, rows, num_variables), batch = value.shape[:3], log_weights.shape[1]
    grad_variables = torch.randn(particles, rows, num_variables, dtype=torch.float64)
    grad_site = torch.randn(particles, rows, batch, dtype=torch.float64)
    results = []
    for function in (fused, brute_force):
        variables, site = function(*args)
        objective = (variables * grad_variables).sum() + (site * grad_site).sum()
        results.append((variables, site, torch.autograd.grad(objective, wrt)))
    (variables, site, grads), (expected_variables, expected_site, expected_grads) = results
    assert torch.allclose(variables, expected_variables, rtol=0, atol=1e-10)
    assert torch.allclose(site, expected_site, rtol=0, atol=1e-10)
    for grad, expected in zip(grads, expected_grads):
        assert torch.allclose(grad, expected, rtol=0, atol=1e-10)


def test_gradcheck_and_one_output_unused():
    value, loc, scale, log_weights = _inputs(2, 3, 4, 2, torch.float64, seed=1)
    assert torch.autograd.gradcheck(lambda *a: normal_pairwise_marginals(*a, log_weights), (value, loc, scale))
    assert torch.autograd.gradcheck(lambda *a: normal_pairwise_marginals(*a, log_weights)[0], (value, loc, scale))
    assert torch.autograd.gradcheck(lambda *a: normal_pairwise_marginals(*a, log_weights)[1], (value, loc, scale))


def test_broadcast_particles_get_summed_gradients():
    value, loc, scale, log_weights = _inputs(3, 2, 4, 2, torch.float64, seed=2)
    shared_loc = loc[:1].detach().clone().requires_grad_()
    variables, site = normal_pairwise_marginals(value, shared_loc, scale, log_weights)
    expected = normal_pairwise_marginals(value, shared_loc.expand(3, -1, -1), scale, log_weights)
    assert torch.equal(variables, expected[0]) and torch.equal(site, expected[1])
    (grad,) = torch.autograd.grad(variables.sum() + site.sum(), shared_loc)
    (expected_grad,) = torch.autograd.grad(expected[0].sum() + expected[1].sum(), shared_loc)
    assert torch.allclose(grad, expected_grad, atol=1e-12)


def test_compiled_kernels_match_eager_in_float32():
    value, loc, scale, log_weights = _inputs(1, 16, 16, 3, torch.float32, seed=3)
    eager = normal_pairwise_marginals(value, loc, scale, log_weights)
    compiled = normal_pairwise_marginals(value, loc, scale, log_weights, compiled=True)
    for a, b in zip(eager, compiled):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    grads = [torch.autograd.grad(out[0].sum() + out[1].logsumexp(-1).sum(), (value, loc, scale))
             for out in (eager, compiled)]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shapes,match", [
    (((2, 3), (1, 3, 2), (1, 3, 2), (2, 3)), "expected value"),
    (((1, 2, 2), (1, 3, 2), (1, 3, 2), (3, 3)), "expected log_weights"),
])
def test_shape_errors(shapes, match):
    tensors = [torch.ones(s) for s in shapes]
    with pytest.raises(ValueError, match=match):
        normal_pairwise_marginals(*tensors)


# Concrete ---------------------------------------------------------------------------------------


def _concrete_inputs(particles, rows, batch, num_variables, num_classes, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    value = torch.rand(particles, rows, num_variables, num_classes, generator=generator, dtype=dtype) + 0.05
    value = (value / value.sum(-1, keepdim=True)).requires_grad_()
    logits = torch.randn(particles, batch, num_variables, num_classes, generator=generator, dtype=dtype)
    logits = logits.log_softmax(-1).detach().requires_grad_()
    temperature = torch.tensor(0.4, dtype=dtype).requires_grad_()
    log_weights = torch.randn(rows, batch, generator=generator, dtype=dtype).log_softmax(-1)
    return value, logits, temperature, log_weights


def _tables_by_loops(density, shape, batch, log_weights):
    """The marginals and the site table of ``density(p, r, b, v)`` by loops over ``shape = (P, R, V)``."""
    P, R, V = shape
    variables = torch.empty(P, R, V, dtype=log_weights.dtype)
    site = torch.empty(P, R, batch, dtype=log_weights.dtype)
    for p in range(P):
        for r in range(R):
            table = [[density(p, r, b, v) for v in range(V)] for b in range(batch)]
            for b in range(batch):
                site[p, r, b] = sum(table[b])
            for v in range(V):
                variables[p, r, v] = torch.logsumexp(torch.stack([table[b][v] + log_weights[r, b]
                                                                  for b in range(batch)]), 0)
    return variables, site


def _concrete_brute_force(value, logits, temperature, log_weights):
    # Maddison et al. (2017), written out per (p, r, b, v) with probabilities, not log space.
    K = value.shape[-1]

    def density(p, r, b, v):
        probs = logits[p, b, v].exp() / logits[p, b, v].exp().sum()
        x, lam = value[p, r, v], temperature[p, b, v]
        log_num = math.lgamma(K) + (K - 1) * lam.log() + sum(
            probs[k].log() - (lam + 1) * x[k].log() for k in range(K))
        return log_num - K * sum(probs[k] * x[k] ** (-lam) for k in range(K)).log()

    return _tables_by_loops(density, value.shape[:3], logits.shape[1], log_weights)


@pytest.mark.parametrize("particles,rows,batch,num_variables,num_classes",
                         [(1, 3, 3, 1, 3), (2, 2, 4, 2, 4), (1, 4, 4, 1, 2)])
def test_concrete_values_and_gradients_match_brute_force(particles, rows, batch, num_variables, num_classes):
    inputs = _concrete_inputs(particles, rows, batch, num_variables, num_classes, torch.float64)
    value, logits, temperature, log_weights = inputs
    args = (value, logits, temperature.expand(particles, batch, num_variables), log_weights)
    _check_against_brute_force(concrete_pairwise_marginals, _concrete_brute_force, args, (value, logits, temperature))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_concrete_underflowed_values_are_clamped_as_concrete_log_prob(dtype):
    # A low-temperature sample with components at exactly 0: the kernel clamps as concrete_log_prob does,
    # so values and gradients equal autograd through it, and stay finite.
    value, logits, temperature, log_weights = _concrete_inputs(1, 3, 3, 1, 4, dtype, seed=5)
    value = value.detach().clone()
    value[0, 0, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=dtype)
    value[0, 1, 0] = torch.tensor([0.5, 0.5, 1e-30, 0.0], dtype=dtype)
    value.requires_grad_()
    fn = RelaxedOneHotCategorical(temperature, logits=logits[:, None])  # components (P, 1, B, V)
    table = concrete_log_prob(fn, value[:, :, None])  # (P, R, B, V)
    expected = torch.logsumexp(table + log_weights[..., None], 2), table.sum(-1)
    out = concrete_pairwise_marginals(value, logits, temperature.expand(1, 3, 1), log_weights)
    tolerance = {"rtol": 1e-12, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-4}
    for a, b in zip(out, expected):
        assert torch.allclose(a, b, **tolerance)
    grads = [torch.autograd.grad(o[0].sum() + o[1].sum(), (value, logits, temperature)) for o in (out, expected)]
    for a, b in zip(*grads):
        assert torch.isfinite(a).all()
        assert torch.allclose(a, b, **tolerance)
    assert grads[0][0][0, 0, 0, 1:].eq(0).all()  # below the floor: no gradient, as clamp's


def test_concrete_gradcheck():
    value, logits, temperature, log_weights = _concrete_inputs(2, 3, 4, 2, 3, torch.float64, seed=1)
    temperature = (0.3 + torch.rand(2, 4, 2, dtype=torch.float64)).requires_grad_()  # per component

    def function(*args):
        return concrete_pairwise_marginals(*args, log_weights)

    assert torch.autograd.gradcheck(function, (value, logits, temperature))
    assert torch.autograd.gradcheck(lambda *a: function(*a)[1], (value, logits, temperature))


def _exp_concrete_brute_force(log_value, logits, temperature, log_weights):
    # The ExpConcrete density of Maddison et al. (2017, eq. 26), written out per (p, r, b, v).
    K = log_value.shape[-1]

    def density(p, r, b, v):
        log_probs = logits[p, b, v] - logits[p, b, v].logsumexp(0)
        y, lam = log_value[p, r, v], temperature[p, b, v]
        scores = [log_probs[k] - lam * y[k] for k in range(K)]
        return math.lgamma(K) + (K - 1) * lam.log() + sum(scores) - K * torch.logsumexp(torch.stack(scores), 0)

    return _tables_by_loops(density, log_value.shape[:3], logits.shape[1], log_weights)


@pytest.mark.parametrize("particles,rows,batch,num_variables,num_classes",
                         [(1, 3, 3, 1, 3), (2, 2, 4, 2, 4), (1, 4, 4, 1, 2)])
def test_log_space_values_and_gradients_match_brute_force(particles, rows, batch, num_variables, num_classes):
    value, logits, temperature, log_weights = _concrete_inputs(particles, rows, batch, num_variables, num_classes,
                                                               torch.float64)
    # Log values far below what the simplex can hold (components of e^-300 and less).
    log_value = (value.detach().log() * 100.0).requires_grad_()
    args = (log_value, logits, temperature.expand(particles, batch, num_variables), log_weights)

    def fused(*args):
        return concrete_pairwise_marginals(*args, log_space=True)

    _check_against_brute_force(fused, _exp_concrete_brute_force, args, (log_value, logits, temperature))


def test_log_space_gradcheck_and_jacobian():
    value, logits, temperature, log_weights = _concrete_inputs(2, 3, 4, 2, 3, torch.float64, seed=1)
    temperature = (0.3 + torch.rand(2, 4, 2, dtype=torch.float64)).requires_grad_()
    log_value = value.detach().log().requires_grad_()

    def function(*args):
        return concrete_pairwise_marginals(*args, log_weights, log_space=True)

    assert torch.autograd.gradcheck(function, (log_value, logits, temperature))
    # Where nothing underflows, the simplex table is the log-space one plus the Jacobian -sum_k y_k.
    simplex = concrete_pairwise_marginals(value, logits, temperature, log_weights)
    in_log_space = function(log_value, logits, temperature)
    jacobian = log_value.sum(-1).detach()  # (P, R, V)
    assert torch.allclose(simplex[0], in_log_space[0] - jacobian, atol=1e-10)
    assert torch.allclose(simplex[1], in_log_space[1] - jacobian.sum(-1, keepdim=True), atol=1e-10)


def test_concrete_compiled_kernels_match_eager_in_float32():
    value, logits, temperature, log_weights = _concrete_inputs(1, 16, 16, 2, 3, torch.float32, seed=3)
    temperature = temperature.expand(1, 16, 2)
    eager = concrete_pairwise_marginals(value, logits, temperature, log_weights)
    compiled = concrete_pairwise_marginals(value, logits, temperature, log_weights, compiled=True)
    for a, b in zip(eager, compiled):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    grads = [torch.autograd.grad(out[0].sum() + out[1].logsumexp(-1).sum(), (value, logits))
             for out in (eager, compiled)]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_compilation_failure_warns_once_and_runs_eager(failing_compiler):
    value, loc, scale, log_weights = _inputs(1, 4, 4, 2, torch.float64, seed=4)
    eager = normal_pairwise_marginals(value, loc, scale, log_weights)
    with pytest.warns(RuntimeWarning, match="no working C.. compiler.*eager fused kernels") as caught:
        out = normal_pairwise_marginals(value, loc, scale, log_weights, compiled=True)
        grads = torch.autograd.grad(out[0].sum() + out[1].sum(), (value, loc, scale))
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    for a, b in zip(out, eager):
        assert torch.equal(a, b)
    for a, b in zip(grads, torch.autograd.grad(eager[0].sum() + eager[1].sum(), (value, loc, scale))):
        assert torch.equal(a, b)


def test_an_input_error_is_not_taken_for_a_compilation_failure(monkeypatch):
    monkeypatch.setattr(fused_marginals, "_compile_error", [])
    value, loc, scale, _ = _inputs(1, 4, 4, 2, torch.float64, seed=4)
    with pytest.raises(ValueError, match="expected log_weights"):
        normal_pairwise_marginals(value, loc, scale, torch.zeros(3, 3), compiled=True)
    assert fused_marginals._compile_error == []


# Dispatch ---------------------------------------------------------------------------------------

_LAYOUT = PlateLayout("data", -1, 3, 10, None, 1)


class _OwnNormal(dist.Normal):
    def log_prob(self, value):
        return super().log_prob(value) + 1.0


@pytest.mark.parametrize("fn,var_ndim,options,kind", [
    (dist.Normal(torch.zeros(3), 1.0), 0, {}, "normal"),
    (dist.Normal(torch.zeros(3, 2), 1.0).to_event(1), 1, {}, "normal"),
    (dist.Normal(torch.zeros(2), 1.0).expand([3, 2]).to_event(1), 1, {}, "normal"),
    (dist.Normal(torch.zeros(3, 2), 1.0).mask(torch.tensor([True, False, True])[:, None]).to_event(1), 1,
     {"masked": False}, "normal"),
    (dist.Normal(torch.zeros(3, 2), 1.0).mask(torch.tensor([True, False, True])[:, None]).to_event(1), 1, {}, None),
    (dist.Normal(torch.zeros(3, 2), 1.0).to_event(1), 0, {}, None),  # the site is one variable: not the kernel's
    (_OwnNormal(torch.zeros(3), 1.0), 0, {}, None),
    (dist.Laplace(torch.zeros(3), 1.0), 0, {}, None),
    (dist.MultivariateNormal(torch.zeros(3, 2), torch.eye(2)), 0, {}, None),
    (dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(3, 4)), 0, {}, "concrete"),
    (dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(3, 2, 4)).to_event(1), 1, {}, "concrete"),
    (dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(3, 2, 4)).to_event(1), 0, {}, None),
    (dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(3, 4)), 0, {"concrete": "argmax"}, None),
    (dist.RelaxedOneHotCategoricalStraightThrough(torch.tensor(0.5), logits=torch.zeros(3, 4)), 0, {}, "concrete"),
    (ExpRelaxedCategorical(torch.tensor(0.5), logits=torch.zeros(3, 4)), 0, {}, "concrete"),
    (dist.Independent(ExpRelaxedCategorical(torch.tensor(0.5), logits=torch.zeros(3, 2, 4)), 1), 1, {}, "concrete"),
    (ExpRelaxedCategorical(torch.tensor(0.5), logits=torch.zeros(3, 4)), 0, {"concrete": "argmax"}, None),
    (ExpRelaxedCategorical(torch.tensor([0.5, 0.4, 0.3]).unsqueeze(-1), logits=torch.zeros(3, 4)), 0, {}, None),
])
def test_dispatch(fn, var_ndim, options, kind):
    table = fused_table(fn, fn.rsample() if fn.has_rsample else fn.sample(), _LAYOUT, var_ndim, **options)
    assert (None if table is None else table.kind) == kind


@pytest.mark.parametrize("kind", ["normal", "concrete", "exp_concrete"])
def test_dispatched_table_equals_generic_pairwise_table(kind):
    # Particles at dim -3, the data plate at -2 and a nested plate at -1: variables span the nested
    # plate's elements and the event; value and parameters broadcast (one scale, one temperature).
    particles, batch, inner = 2, 4, 3
    layout = PlateLayout("data", -2, batch, 10, -3, particles)
    generator = torch.Generator().manual_seed(6)
    if kind == "normal":
        loc = torch.randn(particles, batch, inner, 2, generator=generator, dtype=torch.float64)
        fn = dist.Normal(loc, torch.tensor(0.7, dtype=torch.float64)).to_event(1)
        var_ndim = 1
    else:
        logits = torch.randn(particles, batch, inner, 4, generator=generator, dtype=torch.float64)
        fn = dist.RelaxedOneHotCategorical(torch.tensor(0.5, dtype=torch.float64), logits=logits)
        if kind == "exp_concrete":
            fn = fn.base_dist
        var_ndim = 0
    value = fn.rsample()
    log_weights = torch.randn(3, batch, generator=generator, dtype=torch.float64).log_softmax(-1)
    rows = slice(1, 4)
    variables, site = fused_table(fn, value, layout, var_ndim).marginals(rows, log_weights)
    table = pairwise_log_prob(lambda f, v: variable_log_prob(f, v, var_ndim), fn, value, layout, rows)
    assert variables.shape == (particles, 3, table.shape[-1])
    assert torch.allclose(variables, torch.logsumexp(table + log_weights[..., None], 2), rtol=0, atol=1e-10)
    assert torch.allclose(site, table.sum(-1), rtol=0, atol=1e-10)
    constant = fused_table(fn, value, layout, var_ndim).marginals(rows, -1.5)[0]
    assert torch.allclose(constant, torch.logsumexp(table, 2) - 1.5, rtol=0, atol=1e-10)


@pytest.mark.parametrize("validate", [True, False])
def test_compilation_keeps_the_distribution_validation_setting(validate, monkeypatch):
    # torch.compile's first use calls Distribution.set_default_validate_args(False); simulate it.
    def compile_that_turns_validation_off(function):
        def compiled(*args):
            torch.distributions.Distribution.set_default_validate_args(False)
            return function(*args)

        return compiled

    monkeypatch.setattr(fused_marginals, "_compile", compile_that_turns_validation_off)
    monkeypatch.setattr(fused_marginals, "_COMPILED", {})
    monkeypatch.setattr(fused_marginals, "_compile_error", [])
    before = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(validate)
    try:
        value, loc, scale, log_weights = _inputs(1, 3, 3, 1, torch.float64, seed=7)
        out = normal_pairwise_marginals(value, loc, scale, log_weights, compiled=True)
        torch.autograd.grad(out[0].sum(), (value, loc, scale))
        assert torch.distributions.Distribution._validate_args is validate
    finally:
        torch.distributions.Distribution.set_default_validate_args(before)
