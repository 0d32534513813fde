# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The structure cache of :class:`~pyro_hfvae.infer.terms_elbo.TermsELBO`: a loss reused across
model/guide structures gives what a fresh loss gives, analyses each structure once, and the
hot path does not synchronise with the device.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_hfvae import HFVAELoss, HITLoss, group
from pyro_hfvae.infer.terms_elbo import TermsELBO
from pyro_hfvae.poutine.groups import record_model_infer
from pyro_hfvae.poutine.trace_structure import trace_structure_key

N, D = 50, 3


def make(batch: int, *, groups=("a", "a"), extra_site: bool = False, masked: bool = False):
    """A two-site model/guide pair; the options change its structure."""
    torch.manual_seed(batch)
    x = torch.randn(batch, D)
    idx = torch.arange(batch)
    mask = torch.arange(batch) % 3 != 0

    def model():
        with pyro.plate("data", size=N, subsample=idx), poutine.mask(mask=mask if masked else True):
            with group(groups[0]):
                z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
            with group(groups[1]):
                w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            if extra_site:
                v = pyro.sample("v", dist.Normal(0.0, 1.0))
                z = z + v[..., None]
            pyro.sample("x", dist.Normal(z + w.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide():
        with pyro.plate("data", size=N, subsample=idx), poutine.mask(mask=mask if masked else True):
            pyro.sample("z", dist.Normal(x / 2, 0.8).to_event(1))
            pyro.sample("w", dist.Normal(x[:, :2] / 3, 0.9).to_event(1))
            if extra_site:
                pyro.sample("v", dist.Normal(x[:, 0] / 4, 0.7))

    return model, guide


STRUCTURES = [
    dict(batch=8),
    dict(batch=6),  # batch size
    dict(batch=8, extra_site=True),  # a new site
    dict(batch=8, groups=("a", "b")),  # a group change
    dict(batch=8, masked=True),  # a mask
    dict(batch=8),  # back to the first
]


def losses():
    return [
        lambda: HFVAELoss(alpha=1.5, beta=2.0, gamma=3.0),
        lambda: HFVAELoss(),  # all weights 1: the decomposition is only reported
        lambda: HITLoss({"z": 2.0, "a": 0.5}, analytic_kl=False),
        lambda: HITLoss({"a": 4.0}, default_beta=0.5),
    ]


def evaluate(loss, model, guide, seed: int):
    pyro.set_rng_seed(seed)
    value = loss.differentiable_loss(model, guide)
    return value, dict(loss.terms)


@pytest.mark.parametrize("make_loss", losses(), ids=["hfvae", "hfvae_unit", "hit_sampled", "hit_analytic"])
def test_a_reused_loss_equals_a_fresh_one_across_structures(make_loss):
    reused = make_loss()
    for seed, options in enumerate(STRUCTURES):
        model, guide = make(**options)
        fresh = make_loss()
        expected, expected_terms = evaluate(fresh, model, guide, seed)
        actual, actual_terms = evaluate(reused, model, guide, seed)
        assert actual.item() == pytest.approx(expected.item(), rel=1e-12, abs=1e-12), options
        assert actual_terms.keys() == expected_terms.keys()
        for name, value in expected_terms.items():
            assert actual_terms[name] == pytest.approx(value, rel=1e-12, abs=1e-12), (options, name)


@pytest.mark.parametrize("make_loss", losses()[::2], ids=["hfvae", "hit"])
def test_each_structure_is_analysed_once(make_loss, monkeypatch):
    loss = make_loss()
    calls = []
    analyse = type(loss)._analyse

    def spy(self, *args):
        calls.append(1)
        return analyse(self, *args)

    monkeypatch.setattr(type(loss), "_analyse", spy)
    first, smaller, regrouped = make(8), make(6), make(8, groups=("a", "b"))
    values = [loss.differentiable_loss(*first).item() for _ in range(3)]
    assert len(calls) == 1
    assert len(set(values)) == 3  # fresh samples every time: only the structure is reused
    loss.differentiable_loss(*smaller)
    assert len(calls) == 2
    loss.differentiable_loss(*first)  # kept
    assert len(calls) == 2
    loss.differentiable_loss(*regrouped)
    assert len(calls) == 3
    if isinstance(loss, HFVAELoss):
        loss.gamma = 5.0  # a setting the analysis reads
    else:
        loss.betas = {"z": 2.0}  # other names to look up (new values alone are read at every step)
    loss.differentiable_loss(*first)
    assert len(calls) == 4
    if isinstance(loss, HITLoss):
        loss.betas = {"z": 7.0}
        loss.differentiable_loss(*first)
        assert len(calls) == 4
        assert loss.terms["beta/z"] == 7.0


@pytest.mark.parametrize(
    "change",
    [dict(batch=6), dict(batch=8, extra_site=True), dict(batch=8, groups=("a", "b")), dict(batch=8, masked=True)],
    ids=["batch_size", "new_site", "group", "mask"],
)
def test_structure_changes_change_the_key(change):
    def keys(options):
        model, guide = make(**options)
        guide_trace = poutine.trace(guide).get_trace()
        model_trace = poutine.trace(poutine.replay(record_model_infer(model), trace=guide_trace)).get_trace()
        return trace_structure_key(model_trace), trace_structure_key(guide_trace)

    assert keys(dict(batch=8)) == keys(dict(batch=8))
    assert keys(dict(batch=8)) != keys(change)


def test_dtype_changes_the_key():
    def key(dtype):
        def guide():
            with pyro.plate("data", 4):
                pyro.sample("z", dist.Normal(torch.zeros(4, dtype=dtype), 1.0))

        return trace_structure_key(poutine.trace(guide).get_trace())

    assert key(torch.float32) == key(torch.float32)
    assert key(torch.float32) != key(torch.float64)


def test_structural_errors_are_not_cached():
    model, guide = make(8)

    def bad_guide():
        guide()
        pyro.sample("extra", dist.Normal(0.0, 1.0))

    loss = HFVAELoss()
    for _ in range(2):
        with pytest.raises(ValueError, match="'extra' is not in the model"):
            loss.differentiable_loss(model, bad_guide)
    loss.differentiable_loss(model, guide)


@pytest.mark.parametrize("make_loss", losses()[::2], ids=["hfvae", "hit"])
def test_the_step_does_not_sync(make_loss, monkeypatch):
    # After the first (analysing) evaluation, differentiable_loss reads no tensor's value.
    loss = make_loss()
    model, guide = make(8)
    with pyro.validation_enabled(False):
        loss.differentiable_loss(model, guide)

    def sync(self, *args, **kwargs):
        raise AssertionError("host sync on the hot path")

    # (Validation checks the values of the distributions' arguments: turn it off, as training does.)
    with pyro.validation_enabled(False), monkeypatch.context() as patch:
        for method in ("item", "tolist", "__bool__", "__float__"):
            patch.setattr(torch.Tensor, method, sync)
        value = loss.differentiable_loss(model, guide)
    assert torch.isfinite(value)
    # The terms are converted when read, in one go, and equal a fresh evaluation's.
    terms = loss.terms
    assert all(isinstance(v, float) for v in terms.values())
    assert loss.terms is terms


def test_terms_are_those_of_the_last_evaluation():
    loss = HFVAELoss(beta=2.0)
    model, guide = make(8)
    pyro.set_rng_seed(0)
    first = loss.loss(model, guide)
    first_terms = dict(loss.terms)
    pyro.set_rng_seed(1)
    second = loss.loss(model, guide)
    assert first != second
    assert loss.terms != first_terms
    fresh = HFVAELoss(beta=2.0)
    pyro.set_rng_seed(1)
    fresh.loss(model, guide)
    assert loss.terms == fresh.terms
    assert isinstance(loss, TermsELBO)


def test_distribution_mask_true_and_tensor_are_analysed_apart():
    # .mask(True) and .mask(tensor) share a wrapper type; a loss that saw the first must not ignore the second.
    mask = torch.tensor([True, False, True])

    def program(m):
        def model():
            with pyro.plate("data", 3):
                z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).mask(m))
                pyro.sample("x", dist.Normal(z, 1.0).mask(m), obs=torch.ones(3))

        def guide():
            with pyro.plate("data", 3):
                pyro.sample("z", dist.Normal(torch.full((3,), 0.5), 0.7).mask(m))

        return model, guide

    reused = HFVAELoss(1.0, 4.0, 3.0, dataset_size=3)
    pyro.set_rng_seed(0)
    reused.loss(*program(True))
    for m in (mask, True):
        pyro.set_rng_seed(1)
        expected = HFVAELoss(1.0, 4.0, 3.0, dataset_size=3).loss(*program(m))
        pyro.set_rng_seed(1)
        assert reused.loss(*program(m)) == pytest.approx(expected, rel=1e-12, abs=1e-12)
