"""HFVAELoss on partially observed groups (a label sampled with obs_mask=): the decomposition over the
latent rows against a brute-force double loop, the identity with Trace_ELBO, the supervised term's
gradient against its analytic formula, fully labelled and unlabelled batches, and the mask errors."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyro_hfvae import HFVAELoss, group

N, B, K, D = 40, 5, 3, 2
TEMPERATURE = 0.66
DTYPE = torch.float64


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 4, generator=g, dtype=DTYPE)
    labels = torch.randint(0, K, (B,), generator=g)
    params = {
        "classifier": torch.randn(4, K, generator=g, dtype=DTYPE).requires_grad_(),
        "loc": torch.randn(B, D, generator=g, dtype=DTYPE).requires_grad_(),
        "y_to_loc": torch.randn(K, D, generator=g, dtype=DTYPE).requires_grad_(),
        "log_scale": (0.3 * torch.randn(B, D, generator=g, dtype=DTYPE)).requires_grad_(),
        "decoder": torch.randn(K + D, 4, generator=g, dtype=DTYPE),
    }
    return x, labels, params


def _pair(x, labels, mask, params, family="concrete"):
    """A semi-supervised model and guide: the class ``y`` observed where ``mask``, the style ``z`` latent."""
    temperature = torch.tensor(TEMPERATURE, dtype=DTYPE)
    onehot = torch.nn.functional.one_hot(labels, K).to(DTYPE)

    def prior_y():
        if family == "concrete":
            return dist.RelaxedOneHotCategorical(temperature, logits=torch.zeros(B, K, dtype=DTYPE))
        return dist.Normal(torch.zeros(B, K, dtype=DTYPE), 1.0).to_event(1)

    def posterior_y():
        logits = x @ params["classifier"]
        if family == "concrete":
            return dist.RelaxedOneHotCategorical(temperature, logits=logits)
        return dist.Normal(logits, 0.5).to_event(1)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            y = pyro.sample("y", prior_y(), obs=onehot, obs_mask=mask)
            z = pyro.sample("z", dist.Normal(torch.zeros(B, D, dtype=DTYPE), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(torch.cat([y, z], -1) @ params["decoder"], 1.0).to_event(1), obs=x)

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            with group("class"), poutine.mask(mask=~mask):
                y = pyro.sample("y_unobserved", posterior_y())
            y = torch.where(mask[:, None], onehot, y)
            loc = params["loc"] + y @ params["y_to_loc"]
            with group("style"):
                pyro.sample("z", dist.Normal(loc, params["log_scale"].exp()).to_event(1))

    return model, guide


def _replayed(model, guide):
    trace = poutine.trace(guide).get_trace()
    return poutine.replay(model, trace=trace), poutine.replay(guide, trace=trace), trace


def _concrete_log_density(value, logits):
    # The Concrete density of Maddison et al. (2017), written out.
    log_pi = logits.log_softmax(-1)
    lam = TEMPERATURE
    return (
        math.lgamma(K)
        + (K - 1) * math.log(lam)
        + (log_pi - (lam + 1) * value.log()).sum(-1)
        - K * (log_pi.exp() * value.pow(-lam)).sum(-1).log()
    )


def _normal_log_density(value, loc, scale):
    return -0.5 * ((value - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)


def _brute_force(trace, x, labels, mask, params, alpha, beta, gamma, weight):
    """Per data point, the HFVAE objective over its latent sites, by double loops."""
    with torch.no_grad():
        yv = trace.nodes["y_unobserved"]["value"]
        zv = trace.nodes["z"]["value"]
        logits = x @ params["classifier"]
        onehot = torch.nn.functional.one_hot(labels, K).to(DTYPE)
        y = torch.where(mask[:, None], onehot, yv)
        zloc = params["loc"] + y @ params["y_to_loc"]
        zscale = params["log_scale"].exp()

        def weight_of(b, c):
            return 1.0 / N if b == c else (N - 1) / (N * (B - 1))

        def lse(values):
            return torch.logsumexp(torch.stack(values), 0)

        rows = {k: [] for k in ("log_lik", "mi", "tc_between", "tc_within", "dimwise", "supervised", "objective")}
        for b in range(B):
            labelled = bool(mask[b])
            lz = [_normal_log_density(zv[b], zloc[c], zscale[c]) for c in range(B)]  # (D,) each
            ly = [_concrete_log_density(yv[b], logits[c]) for c in range(B)]
            lw = [math.log(weight_of(b, c)) for c in range(B)]
            qh_zd = lse([lz[c] + lw[c] for c in range(B)])  # (D,)
            qh_style = lse([lz[c].sum() + lw[c] for c in range(B)])
            if labelled:
                qh_joint = qh_style
                log_q = lz[b].sum()
                qh_groups = qh_style
                dimwise_y = 0.0
            else:
                qh_joint = lse([lz[c].sum() + ly[c] + lw[c] for c in range(B)])
                qh_class = lse([ly[c] + lw[c] for c in range(B)])
                log_q = lz[b].sum() + ly[b]
                qh_groups = qh_style + qh_class
                dimwise_y = qh_class - _concrete_log_density(yv[b], torch.zeros(K, dtype=DTYPE))
            log_pz = _normal_log_density(zv[b], torch.zeros(D, dtype=DTYPE), torch.ones(D, dtype=DTYPE))
            mi = log_q - qh_joint
            tc_between = qh_joint - qh_groups  # factorised prior: its total correlations are 0
            tc_within = qh_style - qh_zd.sum()
            dimwise = (qh_zd - log_pz).sum() + dimwise_y
            decoded = torch.cat([y[b], zv[b]]) @ params["decoder"]
            log_lik = _normal_log_density(x[b], decoded, torch.ones(4, dtype=DTYPE)).sum()
            supervised = 0.0
            if labelled:
                log_lik = log_lik + math.log(1.0 / K)  # log p(y = label), the categorical probability
                supervised = logits[b].log_softmax(-1)[labels[b]]
            objective = log_lik - alpha * mi - beta * tc_between - gamma * tc_within - dimwise + weight * supervised
            for k, v in zip(rows, (log_lik, mi, tc_between, tc_within, dimwise, supervised, objective)):
                rows[k].append(float(v))
    return {k: sum(v) / B for k, v in rows.items()}


@pytest.mark.parametrize(
    "mask",
    [[True, False, True, False, False], [True] * B, [False] * B],
    ids=["mixed", "all_labelled", "none_labelled"],
)
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 0.0), (2.0, 4.0, 3.0, 0.1)], ids=["unit", "weighted"])
def test_brute_force(mask, weights):
    mask = torch.tensor(mask)
    x, labels, params = _setup(1)
    model, guide, trace = _replayed(*_pair(x, labels, mask, params))
    alpha, beta, gamma, weight = weights
    elbo = HFVAELoss(alpha, beta, gamma, supervised_weight=weight)
    loss = elbo.loss(model, guide)
    expected = _brute_force(trace, x, labels, mask, params, alpha, beta, gamma, weight)
    terms = elbo.terms
    assert terms["log_likelihood"] == pytest.approx(expected["log_lik"], rel=1e-9)
    assert terms["mutual_info"] == pytest.approx(expected["mi"], rel=1e-9, abs=1e-9)
    assert terms["tc_between"] == pytest.approx(expected["tc_between"], rel=1e-9, abs=1e-9)
    assert terms["tc_within"] == pytest.approx(expected["tc_within"], rel=1e-9, abs=1e-9)
    assert terms["dimwise_kl"] == pytest.approx(expected["dimwise"], rel=1e-9)
    assert terms["supervised"] == pytest.approx(expected["supervised"], rel=1e-9, abs=1e-12)
    assert terms["objective"] == pytest.approx(expected["objective"], rel=1e-9)
    assert loss == pytest.approx(-N * expected["objective"], rel=1e-9)
    if mask.any():
        assert terms["supervised"] < 0
    else:
        assert terms["supervised"] == 0


def test_unlabelled_batch_is_the_plain_model():
    # With no labelled point the split model is the plain one whose class is latent everywhere.
    mask = torch.zeros(B, dtype=torch.bool)
    x, labels, params = _setup(2)
    split_model, split_guide, trace = _replayed(*_pair(x, labels, mask, params))
    split = HFVAELoss(1.0, 4.0, 3.0, supervised_weight=0.5)
    split_loss = split.loss(split_model, split_guide)
    temperature = torch.tensor(TEMPERATURE, dtype=DTYPE)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            y = pyro.sample("y", dist.RelaxedOneHotCategorical(temperature, logits=torch.zeros(B, K, dtype=DTYPE)))
            z = pyro.sample("z", dist.Normal(torch.zeros(B, D, dtype=DTYPE), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(torch.cat([y, z], -1) @ params["decoder"], 1.0).to_event(1), obs=x)

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            with group("class"):
                y = pyro.sample("y", dist.RelaxedOneHotCategorical(temperature, logits=x @ params["classifier"]))
            loc = params["loc"] + y @ params["y_to_loc"]
            with group("style"):
                pyro.sample("z", dist.Normal(loc, params["log_scale"].exp()).to_event(1))

    values = {"y": trace.nodes["y_unobserved"]["value"], "z": trace.nodes["z"]["value"]}
    plain_trace = poutine.trace(poutine.condition(guide, data=values)).get_trace()
    for site in plain_trace.nodes.values():
        site["is_observed"] = False  # replay takes sampled values
    plain = HFVAELoss(1.0, 4.0, 3.0)
    plain_loss = plain.loss(poutine.replay(model, trace=plain_trace), poutine.replay(guide, trace=plain_trace))
    assert split_loss == pytest.approx(plain_loss, rel=1e-10)
    for name, value in plain.terms.items():
        assert split.terms[name] == pytest.approx(value, rel=1e-10, abs=1e-12), name
    assert split.terms["supervised"] == 0


@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_trace_elbo_identity(weight):
    # A Normal label: Trace_ELBO scores it as HFVAELoss does; the loss adds -w (N/B) sum log q(label | x).
    mask = torch.tensor([True, False, False, True, False])
    x, labels, params = _setup(3)
    model, guide, _ = _replayed(*_pair(x, labels, mask, params, family="normal"))
    leaves = [params[k] for k in ("classifier", "loc", "y_to_loc", "log_scale")]
    expected = Trace_ELBO().differentiable_loss(model, guide)
    expected_grads = torch.autograd.grad(expected, leaves, retain_graph=True)
    elbo = HFVAELoss(supervised_weight=weight)
    actual = elbo.differentiable_loss(model, guide)
    actual_grads = torch.autograd.grad(actual, leaves, retain_graph=True)
    onehot = torch.nn.functional.one_hot(labels, K).to(DTYPE)
    log_q_label = dist.Normal(x @ params["classifier"], 0.5).to_event(1).log_prob(onehot)
    supervised = torch.where(mask, log_q_label, 0.0).sum()
    correction = -weight * (N / B) * supervised
    assert actual.item() == pytest.approx((expected + correction).item(), rel=1e-10)
    correction_grads = torch.autograd.grad(correction, leaves, allow_unused=True)
    for a, e, c in zip(actual_grads, expected_grads, correction_grads):
        assert torch.allclose(a, e + (0.0 if c is None else c), rtol=1e-9, atol=1e-12)
    assert elbo.terms["supervised"] == pytest.approx(supervised.item() / B, rel=1e-10)
    assert elbo.terms["elbo"] == pytest.approx(-expected.item() / N, rel=1e-10)  # per data point


def test_supervised_gradient_is_the_softmax_regression_gradient():
    # d/dW sum_labelled log softmax(x W)[label] = sum_labelled x^T (onehot - softmax(x W)).
    mask = torch.tensor([True, True, False, True, False])
    x, labels, params = _setup(4)
    model, guide, _ = _replayed(*_pair(x, labels, mask, params))
    with_term = HFVAELoss(1.0, 4.0, 3.0, supervised_weight=0.7).differentiable_loss(model, guide)
    without = HFVAELoss(1.0, 4.0, 3.0).differentiable_loss(model, guide)
    (grad,) = torch.autograd.grad(with_term - without, [params["classifier"]], retain_graph=True)
    with torch.no_grad():
        onehot = torch.nn.functional.one_hot(labels, K).to(DTYPE)
        residual = (onehot - (x @ params["classifier"]).softmax(-1)) * mask[:, None]
        analytic = -0.7 * (N / B) * x.T @ residual
    assert torch.allclose(grad, analytic, rtol=1e-10, atol=1e-12)
    assert grad.abs().max() > 0


def test_guide_must_mask_the_latent_half():
    mask = torch.tensor([True, False, True, False, False])
    x, labels, params = _setup(5)
    model, guide = _pair(x, labels, mask, params)

    def unmasked_guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            with group("class"):
                pyro.sample("y_unobserved", dist.RelaxedOneHotCategorical(
                    torch.tensor(TEMPERATURE, dtype=DTYPE), logits=x @ params["classifier"]))
            pyro.sample("z", dist.Normal(params["loc"], 1.0).to_event(1))

    with pytest.raises(ValueError, match=r"guide site 'y_unobserved'.*poutine.mask\(mask=~obs_mask\)"):
        HFVAELoss().loss(model, unmasked_guide)


def test_other_mask_mismatch_is_still_an_error():
    mask = torch.tensor([True, False, True, False, False])
    x, labels, params = _setup(6)
    model, guide = _pair(x, labels, mask, params)
    keep = torch.tensor([True, True, False, True, True])

    def masked_model():
        with poutine.mask(mask=keep):
            model()

    with pytest.raises(ValueError, match=r"same mask on every latent site|keep together"):
        HFVAELoss().loss(masked_model, guide)
    # Around the whole model and guide the mask is fine, and keeps the labelled points it keeps.
    elbo = HFVAELoss(supervised_weight=1.0)
    elbo.loss(poutine.mask(model, mask=keep), poutine.mask(guide, mask=keep))
    onehot_rows = torch.tensor([True, False, False, False, False])  # labelled and kept
    logits = x @ params["classifier"]
    expected = logits.log_softmax(-1)[torch.arange(B), labels][onehot_rows].sum() / B
    assert elbo.terms["supervised"] == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.filterwarnings("ignore:Found")
def test_guide_sampling_the_whole_site_is_an_error():
    mask = torch.tensor([True, False, True, False, False])
    x, labels, params = _setup(7)
    model, _ = _pair(x, labels, mask, params)

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("y", dist.RelaxedOneHotCategorical(torch.tensor(TEMPERATURE, dtype=DTYPE),
                                                           logits=x @ params["classifier"]))
            pyro.sample("z", dist.Normal(params["loc"], 1.0).to_event(1))

    with pytest.raises(ValueError, match=r"'y_unobserved'.*obs_mask"):
        HFVAELoss().loss(model, guide)
