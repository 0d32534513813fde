import math

import pytest
import torch

from pyro_hfvae.ops.fused_marginals import normal_pairwise_marginals


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
    grad_variables = torch.randn(particles, rows, num_variables, dtype=torch.float64)
    grad_site = torch.randn(particles, rows, batch, dtype=torch.float64)
    results = []
    for function in (normal_pairwise_marginals, _brute_force):
        variables, site = function(value, loc, scale, log_weights)
        objective = (variables * grad_variables).sum() + (site * grad_site).sum()
        results.append((variables, site, torch.autograd.grad(objective, (value, loc, scale))))
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
