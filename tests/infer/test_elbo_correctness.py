"""Both losses against Pyro's Trace_ELBO where they must agree: auxiliary and observed guide
sites, masks, global-only models; the one log-density dispatcher on low-temperature Concrete
sites; and the errors for unmatched sites and bad constructor arguments."""
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyro_hfvae import HFVAELoss, HITLoss

N, B, D = 40, 5, 3


def _unit_losses():
    return [HFVAELoss(), HITLoss(analytic_kl=False)]


def _loss_and_grads(elbo, model, guide, leaves):
    loss = elbo.differentiable_loss(model, guide)
    return loss.detach(), torch.autograd.grad(loss, leaves, allow_unused=True, retain_graph=True)


def _assert_equal_to_trace_elbo(elbo, model, guide, leaves):
    trace = poutine.trace(guide).get_trace()
    model, guide = poutine.replay(model, trace=trace), poutine.replay(guide, trace=trace)
    expected, expected_grads = _loss_and_grads(Trace_ELBO(), model, guide, leaves)
    actual, actual_grads = _loss_and_grads(elbo, model, guide, leaves)
    assert actual.item() == pytest.approx(expected.item(), rel=1e-10)
    for a, e in zip(actual_grads, expected_grads):
        assert torch.allclose(a, e, rtol=1e-9, atol=1e-12)
    return actual_grads


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(B, D, generator=g, dtype=torch.float64).requires_grad_()
    log_scale = (0.3 * torch.randn(B, D, generator=g, dtype=torch.float64)).requires_grad_()
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    return loc, log_scale, x


# ---- auxiliary and observed guide sites ----------------------------------------------------------


@pytest.mark.parametrize("elbo", _unit_losses(), ids=["hfvae", "hit"])
@pytest.mark.parametrize("local", [False, True])
def test_auxiliary_guide_site_is_trace_elbo(elbo, local):
    loc, log_scale, x = _params(1)
    aux_loc = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            z = pyro.sample("z", dist.Normal(torch.zeros(B, D, dtype=torch.float64), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide():
        if not local:
            a = pyro.sample("a", dist.Normal(aux_loc, 0.5), infer={"is_auxiliary": True})
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            if local:
                a = pyro.sample("a", dist.Normal(aux_loc.expand(B), 0.5), infer={"is_auxiliary": True})
                a = a[:, None]
            pyro.sample("z", dist.Normal(loc + a, log_scale.exp()).to_event(1))

    _assert_equal_to_trace_elbo(elbo, model, guide, [loc, log_scale, aux_loc])
    assert ("auxiliary" in elbo.terms) == (local or isinstance(elbo, HITLoss))


@pytest.mark.parametrize("elbo", _unit_losses(), ids=["hfvae", "hit"])
def test_observed_guide_site_is_trace_elbo(elbo):
    loc, log_scale, x = _params(2)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            z = pyro.sample("z", dist.Normal(torch.zeros(B, D, dtype=torch.float64), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            z = pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))
            pyro.sample("x", dist.Normal(z, 2.0).to_event(1), obs=x)  # Trace_ELBO subtracts its density

    _assert_equal_to_trace_elbo(elbo, model, guide, [loc, log_scale])


@pytest.mark.parametrize("make_loss", [HFVAELoss, HITLoss], ids=["hfvae", "hit"])
def test_guide_site_missing_from_model_is_an_error(make_loss):
    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("z", dist.Normal(torch.zeros(B), 1.0))

    def guide():
        pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("z", dist.Normal(torch.zeros(B), 1.0))

    with pytest.raises(ValueError, match=r"guide site 'w' is not in the model.*is_auxiliary"):
        make_loss().loss(model, guide)


@pytest.mark.parametrize("make_loss", [HFVAELoss, HITLoss], ids=["hfvae", "hit"])
def test_model_latent_without_guide_site_is_an_error(make_loss):
    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("z", dist.Normal(torch.zeros(B), 1.0))
            pyro.sample("u", dist.Normal(torch.zeros(B), 1.0))

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("z", dist.Normal(torch.zeros(B), 1.0))

    with pytest.raises(ValueError, match=r"model site 'u' is not sampled by the guide"):
        make_loss().loss(model, guide)


# ---- masks ----------------------------------------------------------------------------------------

MASK = torch.tensor([True, False, True, True, False])


def _masked_pair(where, how, loc, log_scale, x):
    def fn(d):
        return d.mask(MASK[:, None]).to_event(1) if how == "distribution" else d.to_event(1)

    def mask_context():
        return poutine.mask(mask=MASK) if how == "poutine" else poutine.mask(mask=True)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            prior = dist.Normal(torch.zeros(B, D, dtype=torch.float64), 1.0)
            with mask_context() if where != "observed" else poutine.mask(mask=True):
                z = pyro.sample("z", fn(prior) if where != "observed" else prior.to_event(1))
            with mask_context() if where != "latent" else poutine.mask(mask=True):
                likelihood = dist.Normal(z, 1.0)
                pyro.sample("x", fn(likelihood) if where != "latent" else likelihood.to_event(1), obs=x)

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            posterior = dist.Normal(loc, log_scale.exp())
            with mask_context() if where != "observed" else poutine.mask(mask=True):
                pyro.sample("z", fn(posterior) if where != "observed" else posterior.to_event(1))

    return model, guide


@pytest.mark.parametrize("elbo", _unit_losses(), ids=["hfvae", "hit"])
@pytest.mark.parametrize("how", ["distribution", "poutine"])
@pytest.mark.parametrize("where", ["observed", "latent", "all"])
def test_masks_count_as_in_trace_elbo(elbo, where, how):
    # The observation is masked, or the latent sites, or both.
    loc, log_scale, x = _params(3)
    model, guide = _masked_pair(where, how, loc, log_scale, x)
    grads = _assert_equal_to_trace_elbo(elbo, model, guide, [loc, log_scale])
    masked_grads = torch.cat([g[~MASK] for g in grads])
    if where == "all":  # a masked-out data point has no terms of its own
        assert torch.all(masked_grads == 0)
    else:  # its KL or its likelihood still counts
        assert torch.all(masked_grads != 0)


@pytest.mark.parametrize("how", ["distribution", "poutine"])
@pytest.mark.parametrize("where", ["observed", "latent", "all"])
def test_masked_points_drop_their_own_terms(where, how):
    # With weights != 1, the loss is -(N/B) sum of the kept points' L_b; a masked point's
    # posterior still enters the kept points' aggregate-posterior marginals.
    loc, log_scale, x = _params(4)
    model, guide = _masked_pair(where, how, loc, log_scale, x)
    trace = poutine.trace(guide).get_trace()
    model, guide = poutine.replay(model, trace=trace), poutine.replay(guide, trace=trace)
    loss_fn = HFVAELoss(2.0, 3.0, 4.0)
    loss = loss_fn.loss(model, guide)
    assert loss == pytest.approx(-N * loss_fn.terms["objective"], rel=1e-10)
    z = trace.nodes["z"]["value"]
    log_lik = dist.Normal(z, 1.0).log_prob(x).sum(-1)
    kept = torch.ones(B, dtype=torch.bool) if where == "observed" else MASK
    if where != "latent":
        log_lik = torch.where(MASK, log_lik, 0.0)  # masked observations count 0
    assert loss_fn.terms["log_likelihood"] == pytest.approx(log_lik.sum().item() / B, rel=1e-10)
    # The mutual information of a kept point, by brute force over all B mixture components.
    q = dist.Normal(loc.detach()[None], log_scale.detach().exp()[None]).log_prob(z[:, None]).sum(-1)  # [b, b']
    w = torch.full((B, B), math.log((N - 1) / (N * (B - 1))), dtype=torch.float64)
    w.fill_diagonal_(-math.log(N))
    mutual_info = q.diagonal() - torch.logsumexp(q + w, 1)
    assert loss_fn.terms["mutual_info"] == pytest.approx((mutual_info * kept).sum().item() / B, rel=1e-10)


# ---- one log-density dispatcher: low-temperature Concrete sites ---------------------------------------

TEMPERATURE, K = 0.05, 12


def _concrete_log_density(x, logits, temperature):
    """Maddison et al. (2017) in log space, written independently, in float64."""
    x, logits = x.double(), logits.double()
    log_x = x.clamp(min=torch.finfo(torch.float32).tiny ** 0.5).log()
    log_pi = logits.log_softmax(-1)
    k = x.shape[-1]
    return (
        math.lgamma(k)
        + (k - 1) * math.log(temperature)
        + (log_pi - (temperature + 1) * log_x).sum(-1)
        - k * torch.logsumexp(log_pi - temperature * log_x, -1)
    )


@pytest.mark.parametrize("wrapper", ["mask", "expand", "to_event"])
def test_low_temperature_concrete_is_scored_alike_by_both_losses(wrapper):
    g = torch.Generator().manual_seed(5)
    logits = 8.0 * torch.randn(B, 2, K, generator=g)  # samples underflow to exact zeros in float32
    temperature = torch.tensor(TEMPERATURE)

    def wrap(fn):
        if wrapper == "mask":
            return fn.mask(torch.ones(B, 2, dtype=torch.bool)).to_event(1)
        if wrapper == "expand":
            return fn.expand([B, 2]).to_event(1)
        return fn.to_event(1)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            prior_logits = torch.zeros(K) if wrapper == "expand" else torch.zeros(B, 2, K)
            pyro.sample("y", wrap(dist.RelaxedOneHotCategorical(temperature, logits=prior_logits)))

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("y", dist.RelaxedOneHotCategorical(temperature, logits=logits).to_event(1))

    trace = poutine.trace(guide).get_trace()
    y = trace.nodes["y"]["value"]
    assert (y == 0).any()
    model, guide = poutine.replay(model, trace=trace), poutine.replay(guide, trace=trace)
    hfvae, hit = HFVAELoss(), HITLoss(analytic_kl=False)
    hfvae.loss(model, guide)
    hit.loss(model, guide)
    log_q = _concrete_log_density(y, logits, TEMPERATURE).sum(-1)
    log_p = _concrete_log_density(y, torch.zeros(K), TEMPERATURE).sum(-1)
    expected = (log_q - log_p).mean().item()
    assert math.isfinite(hfvae.terms["kl"]) and math.isfinite(hit.terms["rate/y"])
    assert hit.terms["rate/y"] == pytest.approx(hfvae.terms["kl"], rel=1e-6)
    assert hfvae.terms["kl"] == pytest.approx(expected, rel=1e-4)


# ---- global-only models in HITLoss, data plate default ----------------------------------------------


def test_hit_global_latents_keep_their_betas():
    def model():
        w = pyro.sample("w", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        pyro.sample("x", dist.Normal(w, 1.0), obs=torch.tensor(0.5, dtype=torch.float64))

    def guide():
        pyro.sample("w", dist.Normal(torch.tensor(0.3, dtype=torch.float64), 0.5))

    trace = poutine.trace(guide).get_trace()
    model, guide = poutine.replay(model, trace=trace), poutine.replay(guide, trace=trace)
    w = trace.nodes["w"]["value"]
    log_lik = dist.Normal(w, 1.0).log_prob(torch.tensor(0.5, dtype=torch.float64))
    rate = dist.Normal(0.3 * torch.ones((), dtype=torch.float64), 0.5).log_prob(w) - dist.Normal(0.0, 1.0).log_prob(w)
    loss = HITLoss({"w": 3.0}, analytic_kl=False).loss(model, guide)
    assert loss == pytest.approx((-log_lik + 3.0 * rate).item(), rel=1e-12)
    assert HITLoss(analytic_kl=False).loss(model, guide) == pytest.approx(Trace_ELBO().loss(model, guide), rel=1e-12)


def test_hit_defaults_to_the_outermost_plate():
    x = torch.randn(B, 4)

    def model():
        with pyro.plate("data", B, dim=-2):
            with pyro.plate("pixels", 4, dim=-1):
                z = pyro.sample("z", dist.Normal(torch.zeros(B, 4), 1.0))
                pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide():
        with pyro.plate("data", B, dim=-2):
            with pyro.plate("pixels", 4, dim=-1):
                pyro.sample("z", dist.Normal(torch.zeros(B, 4), 1.0))

    default, named = HITLoss(), HITLoss(data_plate="data")
    trace = poutine.trace(guide).get_trace()
    model, guide = poutine.replay(model, trace=trace), poutine.replay(guide, trace=trace)
    assert default.loss(model, guide) == named.loss(model, guide)
    assert default.terms == named.terms


# ---- errors -----------------------------------------------------------------------------------------


def _pair(guide_fn, batch=B, plate_kwargs=None):
    plate_kwargs = plate_kwargs or {"size": N, "subsample": torch.arange(batch)}

    def model():
        with pyro.plate("data", **plate_kwargs):
            pyro.sample("z", dist.Normal(torch.zeros(batch, 3), 1.0).to_event(1))

    def guide():
        with pyro.plate("data", **plate_kwargs):
            pyro.sample("z", guide_fn())

    return model, guide


@pytest.mark.parametrize("make_loss", [HFVAELoss, HITLoss], ids=["hfvae", "hit"])
def test_switched_off_reparameterisation_message(make_loss):
    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("z", dist.Normal(torch.zeros(B), 1.0).has_rsample_(False))

    with pytest.raises(ValueError, match=r"'z' has Normal, which has reparameterisation switched off"):
        make_loss().loss(model, model)


@pytest.mark.parametrize("make_loss", [HFVAELoss, HITLoss], ids=["hfvae", "hit"])
@pytest.mark.parametrize(
    "guide_fn,match",
    [
        (lambda: dist.Bernoulli(0.5 * torch.ones(B, 3)).to_event(1), "RelaxedBernoulli"),
        (lambda: dist.OneHotCategorical(torch.ones(B, 3)), "RelaxedOneHotCategorical"),
    ],
)
def test_non_reparameterised_site_messages(make_loss, guide_fn, match):
    model, guide = _pair(guide_fn)
    with pytest.raises(ValueError, match=match):
        make_loss().loss(model, guide)


@pytest.mark.parametrize("make_loss", [HFVAELoss, HITLoss], ids=["hfvae", "hit"])
def test_float_concrete_temperature_names_site_and_fix(make_loss):
    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("y", dist.RelaxedOneHotCategorical(0.5, logits=torch.zeros(B, 3)))

    with pytest.raises(ValueError, match=r"site 'y'.*torch.tensor\(0.5\)"):
        make_loss().loss(model, model)


@pytest.mark.parametrize("make_loss", [HFVAELoss, HITLoss], ids=["hfvae", "hit"])
def test_empty_batch_is_an_error(make_loss):
    plate_kwargs = {"size": N, "subsample": torch.arange(0)}
    model, guide = _pair(lambda: dist.Normal(torch.zeros(0, 3), 1.0).to_event(1), batch=0, plate_kwargs=plate_kwargs)
    with pytest.raises(ValueError, match="non-empty batch"):
        make_loss().loss(model, guide)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"alpha": -1.0}, ValueError, ">= 0"),
        ({"beta": -0.5}, ValueError, ">= 0"),
        ({"gamma": -2}, ValueError, ">= 0"),
        ({"level_weights": [1.0, -1.0]}, ValueError, r"level_weights\[1\]"),
        ({"alpha": True}, TypeError, "bool"),
        ({"gamma": float("inf")}, ValueError, "finite"),
        ({"beta": "4"}, TypeError, "number"),
        ({"beta": torch.ones(2)}, TypeError, "shape"),
        ({"dataset_size": 100.7}, TypeError, "an int"),
        ({"dataset_size": "100"}, TypeError, "an int"),
        ({"dataset_size": 0}, ValueError, "positive"),
        ({"pairwise_memory_mb": float("nan")}, ValueError, "pairwise_memory_mb"),
        ({"pairwise_memory_mb": float("inf")}, ValueError, "pairwise_memory_mb"),
        ({"pairwise_memory_mb": -1}, ValueError, "pairwise_memory_mb"),
    ],
)
def test_hfvae_constructor_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        HFVAELoss(**kwargs)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"betas": {"z": True}}, TypeError, "bool"),
        ({"betas": {"z": -1.0}}, ValueError, ">= 0"),
        ({"betas": {"z": float("nan")}}, ValueError, "finite"),
        ({"default_beta": False}, TypeError, "bool"),
        ({"dataset_size": 100.7}, TypeError, "an int"),
        ({"dataset_size": "100"}, TypeError, "an int"),
    ],
)
def test_hit_constructor_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        HITLoss(**kwargs)


@pytest.mark.parametrize("weight", [torch.tensor(4.0), np.float32(4.0), np.int64(4), 4])
def test_weights_accept_numbers_of_any_kind(weight):
    loss = HFVAELoss(alpha=weight, beta=weight, level_weights=[weight], dataset_size=np.int64(100))
    assert (loss.alpha, loss.beta, loss.level_weights, loss.dataset_size) == (4.0, 4.0, (4.0,), 100)
    assert type(loss.alpha) is float and type(loss.dataset_size) is int
    hit = HITLoss({"z": weight}, default_beta=weight, dataset_size=np.int32(10))
    assert hit.read_betas() == {"z": 4.0} and hit.default_beta == 4.0 and hit.dataset_size == 10


@pytest.mark.parametrize("how", ["distribution", "poutine"])
def test_latent_mask_inside_a_data_point_is_an_error(how):
    partial = torch.tensor([[True, False, True]] * B)

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            fn = dist.Normal(torch.zeros(B, 3), 1.0)
            if how == "distribution":
                pyro.sample("z", fn.mask(partial).to_event(1))
            else:
                with poutine.mask(mask=partial[:, 0] & False):  # a whole-point mask, for contrast below
                    pyro.sample("z", fn.to_event(1))

    if how == "distribution":
        with pytest.raises(ValueError, match="guide site 'z'.*parts of a data point"):
            HFVAELoss().loss(guide, guide)
    else:
        assert HFVAELoss().loss(guide, guide) == 0.0  # every point masked out: nothing counts
