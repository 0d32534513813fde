"""
Property-based tests of HFVAELoss: random group trees, plate layouts, masks and scales.

On finite input the loss, its terms and its gradients are finite, and at unit weights the loss
equals Pyro's ``Trace_ELBO`` on the same samples (the telescoping identity of the HFVAE
decomposition), whatever the tree, the layout, the mask or the scale.
"""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyro_hfvae import HFVAELoss

GROUP_NAMES = ["a", "b", "a/c", "a/d", "b/c/e", None]


@st.composite
def programs(draw):
    """A random model/guide pair, as a description that :func:`build` turns into Pyro programs."""
    num_sites = draw(st.integers(1, 4))
    sites = []
    for i in range(num_sites):
        kind = draw(st.sampled_from(["normal", "normal_event", "concrete"]))
        size = 1 if kind == "normal" else draw(st.integers(2, 3))
        sites.append({"name": f"z{i}", "kind": kind, "size": size, "group": draw(st.sampled_from(GROUP_NAMES))})
    batch = draw(st.integers(2, 5))
    return {
        "sites": sites,
        "batch": batch,
        "dataset_size": draw(st.integers(batch, 4 * batch)),
        # where the data plate sits: dim -1, or dim -2 under an inner plate of size 2
        "inner_plate": draw(st.booleans()),
        "mask": draw(st.one_of(st.none(), st.lists(st.booleans(), min_size=batch, max_size=batch))),
        # poutine.mask around the sites, or Distribution.mask() on each site
        "mask_kind": draw(st.sampled_from(["poutine", "distribution"])),
        "scale": draw(st.sampled_from([1.0, 0.5, 3.0])),
        "weights": draw(st.sampled_from([(1.0, 1.0, 1.0), (1.0, 4.0, 3.0), (0.5, 0.0, 2.0)])),
        # weights of the deeper levels (extra entries are unused)
        "level_weights": draw(st.sampled_from([(1.0, 1.0), (2.0, 0.5)])),
        "seed": draw(st.integers(0, 2**16)),
    }


def build(spec):
    generator = torch.Generator().manual_seed(spec["seed"])
    batch, inner = spec["batch"], 2 if spec["inner_plate"] else 1
    shape = (batch, inner) if spec["inner_plate"] else (batch,)
    params = {}
    for site in spec["sites"]:
        loc = torch.randn(*shape, site["size"], generator=generator, dtype=torch.float64).requires_grad_()
        scale = (0.2 + torch.rand(*shape, site["size"], generator=generator, dtype=torch.float64)).requires_grad_()
        params[site["name"]] = (loc, scale)
    x = torch.randn(*shape, generator=generator, dtype=torch.float64)
    mask = None if spec["mask"] is None else torch.tensor(spec["mask"])
    if mask is not None and spec["inner_plate"]:
        mask = mask.unsqueeze(-1)
    temperature = torch.tensor(0.5, dtype=torch.float64)

    def site_dist(site, first, second):
        if site["kind"] == "normal":
            fn = dist.Normal(first.squeeze(-1), second.squeeze(-1))
        elif site["kind"] == "normal_event":
            fn = dist.Normal(first, second).to_event(1)
        else:
            fn = dist.RelaxedOneHotCategorical(temperature, logits=first)
        return fn.mask(mask) if mask is not None and spec["mask_kind"] == "distribution" else fn

    def plates():
        data = pyro.plate("data", size=spec["dataset_size"], subsample=torch.arange(batch),
                          dim=-2 if spec["inner_plate"] else -1)
        return data, (pyro.plate("inner", inner, dim=-1) if spec["inner_plate"] else None)

    def contexts(body):
        data, inner_plate = plates()
        with poutine.scale(scale=spec["scale"]), data:
            with poutine.mask(mask=mask) if mask is not None and spec["mask_kind"] == "poutine" else _nothing():
                if inner_plate is None:
                    return body()
                with inner_plate:
                    return body()

    def model():
        def body():
            total = 0.0
            for site in spec["sites"]:
                zero = torch.zeros(*shape, site["size"], dtype=torch.float64)
                value = pyro.sample(site["name"], site_dist(site, zero, torch.ones_like(zero)))
                total = total + value.sum(-1) if value.dim() > len(shape) else total + value
            likelihood = dist.Normal(total, 1.0)
            if mask is not None and spec["mask_kind"] == "distribution":
                likelihood = likelihood.mask(mask)
            pyro.sample("x", likelihood, obs=x)
        contexts(body)

    def guide():
        def body():
            for site in spec["sites"]:
                infer = {} if site["group"] is None else {"group": site["group"]}
                pyro.sample(site["name"], site_dist(site, *params[site["name"]]), infer=infer)
        contexts(body)

    return model, guide, [tensor for pair in params.values() for tensor in pair]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def _names_clash(spec):
    # A site that names no group is its own group, so it may not share its name with a group.
    tops = {s["group"].split("/")[0] for s in spec["sites"] if s["group"] is not None}
    return any(s["group"] is None and s["name"] in tops for s in spec["sites"])


def _loss_and_grads(loss, model, guide, params):
    value = loss.differentiable_loss(model, guide)
    grads = torch.autograd.grad(value, params, allow_unused=True, retain_graph=True)
    return value, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_finite_input_gives_finite_output_and_unit_weights_give_trace_elbo(spec):
    if _names_clash(spec):
        return
    model, guide, params = build(spec)
    pyro.set_rng_seed(spec["seed"])
    guide_trace = poutine.trace(guide).get_trace()
    replay_model = poutine.replay(model, trace=guide_trace)
    replay_guide = poutine.replay(guide, trace=guide_trace)

    alpha, beta, gamma = spec["weights"]
    # Pyro drops the full size of a plate subsampled to all of it: then N is given to the loss.
    size = {"dataset_size": spec["batch"]} if spec["dataset_size"] == spec["batch"] else {}
    if spec["inner_plate"]:
        size["data_plate"] = "data"
    loss = HFVAELoss(alpha, beta, gamma, level_weights=spec["level_weights"], **size)
    value, grads = _loss_and_grads(loss, replay_model, replay_guide, params)
    assert torch.isfinite(value)
    assert all(math.isfinite(float(v)) for v in loss.terms.values())
    assert all(torch.isfinite(g).all() for g in grads)

    unit = HFVAELoss(1.0, 1.0, 1.0, level_weights=(1.0,) * len(spec["level_weights"]), **size)
    value, grads = _loss_and_grads(unit, replay_model, replay_guide, params)
    expected_value, expected_grads = _loss_and_grads(Trace_ELBO(), replay_model, replay_guide, params)
    assert value.item() == pytest.approx(expected_value.item(), rel=1e-9, abs=1e-9)
    for grad, expected in zip(grads, expected_grads):
        assert torch.allclose(grad, expected, rtol=1e-7, atol=1e-9)
