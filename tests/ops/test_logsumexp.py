# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import itertools
import math

import pytest
import torch

from pyro_hfvae.ops.logsumexp import EXP_FLOOR, floored_exp, safe_logsumexp


def _brute_force_logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    # An independent reference: exact sums in float64 via Python's math.fsum over each slice.
    x = x.detach().to(torch.float64).movedim(dim, -1)
    out = torch.empty(x.shape[:-1], dtype=torch.float64)
    for index in itertools.product(*(range(n) for n in x.shape[:-1])):
        row = x[index].tolist()
        m = max(row)
        out[index] = -math.inf if m == -math.inf else m + math.log(math.fsum(math.exp(v - m) for v in row))
    return out


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("spread", [1.0, 30.0, 300.0])  # 300: most terms fall below the floor
def test_values_and_gradients_match_torch(dim, spread):
    generator = torch.Generator().manual_seed(int(spread) + dim)
    x = (spread * torch.randn(6, 7, 5, generator=generator, dtype=torch.float64)).requires_grad_()
    coef = torch.randn(torch.logsumexp(x, dim).shape, generator=generator, dtype=torch.float64)
    out = safe_logsumexp(x, dim)
    expected = torch.logsumexp(x, dim)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.detach(), _brute_force_logsumexp(x, dim), rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad((out * coef).sum(), x)
    (expected_grad,) = torch.autograd.grad((expected * coef).sum(), x)
    # Raised terms get a zero gradient instead of one below exp(EXP_FLOOR) times the coefficient.
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


def test_float32_matches_torch():
    generator = torch.Generator().manual_seed(0)
    x = 100 * torch.randn(64, 64, 10, generator=generator)
    torch.testing.assert_close(safe_logsumexp(x, 1), torch.logsumexp(x, 1), rtol=0, atol=0)


def test_infinite_and_nan_entries():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    x[1, :2] = -math.inf  # some terms zero
    x[2, :] = -math.inf  # all terms zero: -inf with a zero gradient (torch's is NaN)
    x[3, 1] = math.inf
    x[4, 2] = math.nan
    x.requires_grad_()
    coef = torch.randn(5, generator=generator, dtype=torch.float64)
    out = safe_logsumexp(x, 1)
    (grad,) = torch.autograd.grad((torch.where(torch.isfinite(out), out, 0) * coef).sum(), x)
    finite = [0, 1]
    torch.testing.assert_close(out.detach()[finite], _brute_force_logsumexp(x[finite], 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(grad[finite], coef[finite, None] * torch.softmax(x.detach()[finite], 1), rtol=0,
                               atol=1e-12)
    assert out[2] == -math.inf and (grad[2] == 0).all()
    assert out[3] == math.inf
    assert out[4].isnan()


def test_empty_slices():
    empty = torch.zeros(3, 0, requires_grad=True)
    out = safe_logsumexp(empty, 1)
    assert (out == -math.inf).all() and out.requires_grad


def test_floored_exp():
    x = torch.tensor([0.0, -3.0, EXP_FLOOR, EXP_FLOOR - 1.0, -1e4, -math.inf], dtype=torch.float64,
                     requires_grad=True)
    y = floored_exp(x)
    expected = torch.tensor([1.0, math.exp(-3.0)] + [math.exp(EXP_FLOOR)] * 4, dtype=torch.float64)
    torch.testing.assert_close(y.detach(), expected, rtol=1e-15, atol=0)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert grad[:2].tolist() == pytest.approx([1.0, math.exp(-3.0)], rel=1e-15)
    assert (grad[3:] == 0).all()
    # exp(EXP_FLOOR) is a normal float32 number: no underflow to subnormals.
    assert floored_exp(torch.tensor(-1e4)).item() >= torch.finfo(torch.float32).tiny
