import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_hfvae import HFVAELoss
from pyro_hfvae.infer import JitHFVAELoss
from pyro_hfvae.ops import fused_marginals

N, B, K, D = 40, 8, 3, 2


def make_model_guide(dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    params = {
        "logits": torch.randn(B, K, generator=generator, dtype=dtype).requires_grad_(),
        "loc": torch.randn(B, D, generator=generator, dtype=dtype).requires_grad_(),
        "scale": (0.5 + torch.rand(B, D, generator=generator, dtype=dtype)).requires_grad_(),
        "weight": torch.randn(K + D, 4, generator=generator, dtype=dtype).requires_grad_(),
    }
    x = torch.randint(0, 2, (B, 4), generator=generator).to(dtype)
    temp = torch.tensor(0.66, dtype=dtype)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            y = pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=torch.zeros(K, dtype=dtype)))
            z = pyro.sample("z", dist.Normal(torch.zeros(D, dtype=dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=torch.cat([y, z], -1) @ params["weight"]).to_event(1), obs=x)

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=params["logits"]))
            pyro.sample("z", dist.Normal(params["loc"], params["scale"]).to_event(1))

    return model, guide, list(params.values())


def loss_and_grads(loss_fn, model, guide, leaves):
    pyro.set_rng_seed(0)
    loss = loss_fn.differentiable_loss(model, guide)
    return loss, torch.autograd.grad(loss, leaves)


def test_jit_loss_equals_eager_loss_in_float32():
    # One tiny shape (B = 8, Normal and Concrete): the compiled kernels agree with the eager ones to float32
    # rounding, 1e-5 relative on the loss and 1e-4 on the gradients.
    model, guide, leaves = make_model_guide()
    eager, eager_grads = loss_and_grads(HFVAELoss(1.0, 4.0, 3.0), model, guide, leaves)
    jit_fn = JitHFVAELoss(1.0, 4.0, 3.0)
    assert jit_fn.kernel == "compiled"
    jit, jit_grads = loss_and_grads(jit_fn, model, guide, leaves)
    assert jit.item() == pytest.approx(eager.item(), rel=1e-5)
    for a, b in zip(jit_grads, eager_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    assert not fused_marginals._compile_error


def test_jit_loss_falls_back_to_eager_with_a_warning_when_compilation_fails(failing_compiler):
    model, guide, leaves = make_model_guide(torch.float64)
    # The fallback is the eager fused path, to the bit.
    eager, eager_grads = loss_and_grads(HFVAELoss(1.0, 4.0, 3.0, kernel="fused"), model, guide, leaves)
    with pytest.warns(RuntimeWarning, match="torch.compile of the fused pairwise kernels failed") as caught:
        jit, jit_grads = loss_and_grads(JitHFVAELoss(1.0, 4.0, 3.0), model, guide, leaves)
        loss_and_grads(JitHFVAELoss(1.0, 4.0, 3.0), model, guide, leaves)  # warned once only
    assert len([w for w in caught if "torch.compile" in str(w.message)]) == 1
    assert jit.item() == eager.item()
    for a, b in zip(jit_grads, eager_grads):
        assert torch.equal(a, b)


def test_jit_loss_takes_no_kernel():
    with pytest.raises(TypeError, match="expected no kernel"):
        JitHFVAELoss(kernel="fused")
