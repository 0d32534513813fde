import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

from pyro_hfvae import HFVAELoss, group
from pyro_hfvae.infer import NonFiniteLossError

N, B, K, D, X_DIM = 50, 6, 3, 4, 5


def make_params(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return {
        "logits": torch.randn(B, K, generator=g, dtype=dtype),
        "loc": torch.randn(B, D, generator=g, dtype=dtype),
        "scale": 0.3 + torch.rand(B, D, generator=g, dtype=dtype),
        "weight": torch.randn(K + D, X_DIM, generator=g, dtype=dtype) * 0.5,
        "x": torch.randint(0, 2, (B, X_DIM), generator=g).to(dtype),
        "prior_cov": torch.eye(D, dtype=dtype) + 0.4,
    }


TEMP = 0.7


def make_model_guide(params, *, correlated_prior=False, nested=False, plate_size=N, subsample=True, temp=TEMP):
    temp = torch.tensor(temp, dtype=params["loc"].dtype)

    def plate():
        if subsample:
            return pyro.plate("data", size=plate_size, subsample=torch.arange(B))
        return pyro.plate("data", B)

    def model():
        with plate():
            y = pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=torch.zeros(K, dtype=temp.dtype)))
            if correlated_prior:
                z = pyro.sample("z", dist.MultivariateNormal(torch.zeros(D, dtype=temp.dtype), params["prior_cov"]))
            else:
                z = pyro.sample("z", dist.Normal(torch.zeros(D, dtype=temp.dtype), 1.0).to_event(1))
            logits = torch.cat([y, z], -1) @ params["weight"]
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=params["x"])

    def guide():
        with plate():
            with group("class"):
                pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=params["logits"]))
            if nested:
                # z's first two and last two coordinates in two sub-groups of "style".
                with group("style"):
                    loc, scale = params["loc"], params["scale"]
                    pyro.sample("z", dist.Normal(loc, scale).to_event(1), infer={"group": "all"})
            else:
                pyro.sample("z", dist.Normal(params["loc"], params["scale"]).to_event(1), infer={"group": "style"})

    return model, guide


def replayed(model, guide):
    trace = poutine.trace(guide).get_trace()
    return poutine.replay(model, trace=trace), poutine.replay(guide, trace=trace), trace


def concrete_log_density(x, probs, lam):
    """Maddison et al. (2017), eq. for the Concrete density, written independently."""
    k = len(x)
    log_num = (
        math.lgamma(k)
        + (k - 1) * math.log(lam)
        + sum(math.log(p) - (lam + 1) * math.log(xi) for p, xi in zip(probs, x))
    )
    log_den = k * math.log(sum(p * xi ** (-lam) for p, xi in zip(probs, x)))
    return log_num - log_den


def normal_log_density(v, m, s):
    return -0.5 * ((v - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)


def logsumexp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def brute_force_terms(params, y, z, dataset_size, prior_cov=None):
    """Every HFVAE term per data point by explicit double loops (float64, pure Python)."""
    logits = params["logits"].tolist()
    loc, scale = params["loc"].tolist(), params["scale"].tolist()
    y, z = y.tolist(), z.tolist()
    probs_q = [[math.exp(lg) / sum(math.exp(m) for m in row) for lg in row] for row in logits]

    def log_w(b, bp):
        if b == bp:
            return -math.log(dataset_size)
        return math.log((dataset_size - 1) / (dataset_size * (B - 1)))

    def lq_y(b, bp):
        return concrete_log_density(y[b], probs_q[bp], TEMP)

    def lq_z(b, bp, d):
        return normal_log_density(z[b][d], loc[bp][d], scale[bp][d])

    def lqh(f, b):
        return logsumexp([f(b, bp) + log_w(b, bp) for bp in range(B)])

    out = {k: [] for k in ["mutual_info", "tc_between", "tc_within", "dimwise_kl", "log_q", "log_p"]}
    for b in range(B):
        lp_y = concrete_log_density(y[b], [1.0 / K] * K, TEMP)
        if prior_cov is None:
            lp_zd = [normal_log_density(z[b][d], 0.0, 1.0) for d in range(D)]
            lp_z = sum(lp_zd)
        else:
            cov = prior_cov.numpy()
            lp_zd = [normal_log_density(z[b][d], 0.0, math.sqrt(cov[d, d])) for d in range(D)]
            zb = np.array(z[b])
            lp_z = float(
                -0.5 * zb @ np.linalg.solve(cov, zb) - 0.5 * np.linalg.slogdet(cov)[1] - D / 2 * math.log(2 * math.pi)
            )
        lq = lq_y(b, b) + sum(lq_z(b, b, d) for d in range(D))
        lqh_joint = lqh(lambda b_, bp: lq_y(b_, bp) + sum(lq_z(b_, bp, d) for d in range(D)), b)
        lqh_class = lqh(lq_y, b)
        lqh_style = lqh(lambda b_, bp: sum(lq_z(b_, bp, d) for d in range(D)), b)
        lqh_zd = [lqh(lambda b_, bp, d=d: lq_z(b_, bp, d), b) for d in range(D)]
        lp = lp_y + lp_z
        out["mutual_info"].append(lq - lqh_joint)
        out["tc_between"].append((lqh_joint - lqh_class - lqh_style) - (lp - lp_y - lp_z))
        out["tc_within"].append((lqh_style - sum(lqh_zd)) - (lp_z - sum(lp_zd)))
        out["dimwise_kl"].append((lqh_class - lp_y) + sum(a - c for a, c in zip(lqh_zd, lp_zd)))
        out["log_q"].append(lq)
        out["log_p"].append(lp)
    return {k: np.array(v) for k, v in out.items()}


def log_likelihood(params, y, z):
    logits = torch.cat([y, z], -1) @ params["weight"]
    return dist.Bernoulli(logits=logits).to_event(1).log_prob(params["x"])


@pytest.mark.parametrize("correlated_prior", [False, True])
@pytest.mark.parametrize("dataset_size", [N, B])
@pytest.mark.parametrize("kernel", ["generic", "fused"])
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (1.0, 4.0, 3.0), (0.5, 0.0, 2.0)])
def test_terms_match_brute_force(correlated_prior, dataset_size, weights, kernel):
    params = make_params()
    model, guide = make_model_guide(params, correlated_prior=correlated_prior, plate_size=dataset_size)
    model, guide, trace = replayed(model, guide)
    y, z = trace.nodes["y"]["value"], trace.nodes["z"]["value"]
    alpha, beta, gamma = weights
    # A plate of size B with the whole batch carries no N: say it (see test_data_plate_errors).
    loss_fn = HFVAELoss(alpha, beta, gamma, dataset_size=dataset_size if dataset_size == B else None, kernel=kernel)
    # The prior I + 0.4 has correlation rho = 0.4 / 1.4 between each of its D variables, so the largest
    # eigenvalue of its correlation matrix is 1 + (D - 1) rho: the within-group weight must stay below
    # that over itself minus 1 (tc_weight_bound), else the loss warns that it is unbounded.
    largest = 1 + (D - 1) * 0.4 / 1.4
    unbounded = correlated_prior and gamma >= largest / (largest - 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = loss_fn.loss(model, guide)
    assert any("unbounded below" in str(w.message) for w in caught) == unbounded
    expected = brute_force_terms(params, y, z, dataset_size, params["prior_cov"] if correlated_prior else None)
    terms = loss_fn.terms
    for name in ["mutual_info", "tc_between", "tc_within", "dimwise_kl"]:
        assert terms[name] == pytest.approx(expected[name].mean(), abs=1e-9), name
    ll = log_likelihood(params, y, z).numpy()
    assert terms["log_likelihood"] == pytest.approx(ll.mean(), abs=1e-9)
    per_datum = ll - alpha * expected["mutual_info"] - beta * expected["tc_between"] - gamma * expected["tc_within"]
    per_datum = per_datum - expected["dimwise_kl"]
    # Pyro's subsample scale N/B is a float32 number: compare to float32 precision.
    assert loss == pytest.approx(-(dataset_size / B) * per_datum.sum(), rel=1e-7)
    assert terms["objective"] == pytest.approx(per_datum.mean(), abs=1e-9)
    assert terms["kl"] == pytest.approx((expected["log_q"] - expected["log_p"]).mean(), abs=1e-9)
    if not correlated_prior:
        # Factorised, batch-invariant priors have no prior total correlation: the TCs are the aggregate posterior's.
        assert terms["tc_within/style"] == pytest.approx(expected["tc_within"].mean(), abs=1e-9)


def test_uniform_weights_when_dataset_is_batch():
    params = make_params()
    model, guide = make_model_guide(params, plate_size=B)
    model, guide, trace = replayed(model, guide)
    loss_fn = HFVAELoss(dataset_size=B)
    loss_fn.loss(model, guide)
    z, loc, scale = trace.nodes["z"]["value"], params["loc"], params["scale"]
    # Uniform 1/B mixture over the batch, computed without the estimator's weights.
    table = dist.Normal(loc.unsqueeze(0), scale.unsqueeze(0)).log_prob(z.unsqueeze(1))  # [b, b', d]
    lqh_d = torch.logsumexp(table, 1) - math.log(B)
    lp_d = dist.Normal(0.0, 1.0).log_prob(z)
    assert loss_fn.terms["dimwise_kl/style"] == pytest.approx((lqh_d - lp_d).sum(-1).mean().item(), abs=1e-9)


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("kernel", ["generic", "fused"])
@pytest.mark.parametrize("correlated_prior", [False, True])
def test_unit_weights_equal_trace_elbo(nested, correlated_prior, kernel):
    params = make_params(seed=1)
    for key in ["logits", "loc", "scale", "weight"]:
        params[key].requires_grad_(True)
    model, guide = make_model_guide(params, nested=nested, correlated_prior=correlated_prior)
    model, guide, _ = replayed(model, guide)
    level_weights = [1.0] if nested else []
    hfvae = HFVAELoss(1.0, 1.0, 1.0, level_weights=level_weights, kernel=kernel)
    leaves = [params[k] for k in ["logits", "loc", "scale", "weight"]]
    ours = hfvae.differentiable_loss(model, guide)
    ours_grads = torch.autograd.grad(ours, leaves, retain_graph=True)
    theirs = Trace_ELBO().differentiable_loss(model, guide)
    theirs_grads = torch.autograd.grad(theirs, leaves)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    for a, b in zip(ours_grads, theirs_grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    if nested:
        assert "tc_within/style" not in hfvae.terms  # one child ("style/all"): no TC
        assert "tc_within/style/all" in hfvae.terms
        assert hfvae.terms["tc_within_2"] == pytest.approx(hfvae.terms["tc_within/style/all"])


def test_three_level_tree_weights_deeper_levels():
    params = make_params(seed=2)
    model, guide = make_model_guide(params, nested=True)
    model, guide, _ = replayed(model, guide)
    with pytest.raises(ValueError, match="level_weights"):
        HFVAELoss(1.0, 2.0, 3.0).loss(model, guide)
    base = HFVAELoss(1.0, 2.0, 3.0, level_weights=[1.0])
    heavy = HFVAELoss(1.0, 2.0, 3.0, level_weights=[5.0])
    loss_base, loss_heavy = base.loss(model, guide), heavy.loss(model, guide)
    tc_deep = base.terms["tc_within_2"]
    assert abs(tc_deep) > 1e-6
    # The depth-2 TC is the style sub-group's TC between z's coordinates; the weight multiplies exactly it.
    assert loss_heavy - loss_base == pytest.approx((N / B) * B * 4.0 * tc_deep, rel=1e-6)


def test_beta_equal_gamma_is_beta_tcvae():
    params = make_params(seed=3)
    model, guide = make_model_guide(params)
    model, guide, trace = replayed(model, guide)
    beta = 5.0
    loss_fn = HFVAELoss(1.0, beta, beta)
    loss = loss_fn.loss(model, guide)
    # Hand-written beta-TCVAE (Chen et al. 2018) with stratified weights: one TC over all variables.
    y, z = trace.nodes["y"]["value"], trace.nodes["z"]["value"]
    temp = torch.tensor(TEMP, dtype=torch.float64)
    w = torch.full((B, B), math.log((N - 1) / (N * (B - 1))), dtype=torch.float64)
    w.fill_diagonal_(-math.log(N))
    q_y = dist.RelaxedOneHotCategorical(temp, logits=params["logits"].unsqueeze(0)).log_prob(y.unsqueeze(1))
    q_z = dist.Normal(params["loc"].unsqueeze(0), params["scale"].unsqueeze(0)).log_prob(z.unsqueeze(1))
    log_qz = torch.logsumexp(q_y + q_z.sum(-1) + w, 1)
    log_prod = torch.logsumexp(q_y + w, 1) + torch.logsumexp(q_z + w[..., None], 1).sum(-1)
    log_q = torch.diagonal(q_y) + torch.diagonal(q_z).T.sum(-1)
    log_py = dist.RelaxedOneHotCategorical(temp, logits=torch.zeros(K, dtype=torch.float64)).log_prob(y)
    log_pz = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    elbo_b = log_likelihood(params, y, z) - (log_q - log_qz) - beta * (log_qz - log_prod) - (log_prod - log_py - log_pz)
    assert loss == pytest.approx(-(N / B) * elbo_b.sum().item(), rel=1e-7)


class _FixedNoiseNormal(dist.Normal):
    """A Normal whose rsample reads pre-drawn noise (the same for sequential and vectorized particles)."""

    noise = None
    calls = 0

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        if len(shape) == 3:  # vectorized: (P, B, D)
            eps = type(self).noise[: shape[0]]
        else:
            eps = type(self).noise[type(self).calls % len(type(self).noise)]
            type(self).calls += 1
        return self.loc + self.scale * eps

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(_FixedNoiseNormal, _instance)
        return super().expand(batch_shape, _instance=new)


@pytest.mark.parametrize("kernel", ["generic", "fused"])
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (2.0, 4.0, 3.0)])
def test_sequential_and_vectorized_particles_agree(weights, kernel):
    params = make_params(seed=4)
    num_particles = 4
    _FixedNoiseNormal.noise = torch.randn(num_particles, B, D, dtype=torch.float64)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            z = pyro.sample("z", dist.Normal(torch.zeros(D, dtype=torch.float64), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=z @ params["weight"][K:]).to_event(1), obs=params["x"])

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("z", _FixedNoiseNormal(params["loc"], params["scale"]).to_event(1))

    _FixedNoiseNormal.calls = 0
    sequential = HFVAELoss(*weights, num_particles=num_particles, kernel=kernel)
    seq_loss = sequential.loss(model, guide)
    vectorized = HFVAELoss(*weights, num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1,
                           kernel=kernel)
    vec_loss = vectorized.loss(model, guide)
    assert vec_loss == pytest.approx(seq_loss, rel=1e-10)
    for name, value in sequential.terms.items():
        assert vectorized.terms[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("kernel", ["generic", "fused"])
@pytest.mark.parametrize("num_classes,temp", [(10, 0.3), (30, 0.1)])
def test_low_temperature_concrete_has_finite_gradients(num_classes, temp, kernel):
    torch.manual_seed(0)
    logits = (10 * torch.randn(B, num_classes)).requires_grad_(True)
    temp = torch.tensor(temp)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            y = pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=torch.zeros(num_classes)))
            pyro.sample("x", dist.Normal(y.sum(-1), 1.0), obs=torch.ones(B))

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=logits))

    underflowed = False
    for _ in range(20):
        trace = poutine.trace(guide).get_trace()
        underflowed |= bool((trace.nodes["y"]["value"] == 0).any())
        loss = HFVAELoss(1.0, 4.0, 3.0, kernel=kernel).differentiable_loss(poutine.replay(model, trace),
                                                                          poutine.replay(guide, trace))
        (grad,) = torch.autograd.grad(loss, [logits])
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert underflowed, "the test should exercise samples that underflow to exactly 0"


def test_argmax_concrete_scoring():
    params = make_params(seed=5)
    model, guide = make_model_guide(params)
    model, guide, trace = replayed(model, guide)
    loss_fn = HFVAELoss(concrete_scoring="argmax")
    loss_fn.loss(model, guide)
    y = trace.nodes["y"]["value"]
    k = y.argmax(-1)
    w = torch.full((B, B), math.log((N - 1) / (N * (B - 1))), dtype=torch.float64)
    w.fill_diagonal_(-math.log(N))
    log_pmf = torch.log_softmax(params["logits"], -1)[:, k].T  # [b, b'] = log q(k_b | x_b')
    expected = (torch.logsumexp(log_pmf + w, 1) - math.log(1.0 / K)).mean()
    assert loss_fn.terms["dimwise_kl/class"] == pytest.approx(expected.item(), abs=1e-10)


def test_straight_through_concrete_scores_soft_value():
    temp = torch.tensor(0.5)
    logits = torch.randn(B, K)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            y = pyro.sample("y", dist.RelaxedOneHotCategoricalStraightThrough(temp, logits=torch.zeros(K)))
            pyro.sample("x", dist.Normal(y.sum(-1), 1.0), obs=torch.ones(B))

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("y", dist.RelaxedOneHotCategoricalStraightThrough(temp, logits=logits))

    model, guide, trace = replayed(model, guide)
    loss_fn = HFVAELoss(1.0, 2.0, 2.0)
    loss = loss_fn.loss(model, guide)
    soft = trace.nodes["y"]["value"]._unquantize
    log_q = dist.RelaxedOneHotCategorical(temp, logits=logits).log_prob(soft)
    log_p = dist.RelaxedOneHotCategorical(temp, logits=torch.zeros(K)).log_prob(soft)
    assert math.isfinite(loss)
    assert loss_fn.terms["kl"] == pytest.approx((log_q - log_p).mean().item(), abs=1e-4)


def test_global_sites_take_plain_elbo_terms():
    params = make_params(seed=6)

    def model():
        w = pyro.sample("w", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            z = pyro.sample("z", dist.Normal(torch.zeros(D, dtype=torch.float64), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=w + z @ params["weight"][K:]).to_event(1), obs=params["x"])

    def guide():
        pyro.sample("w", dist.Normal(torch.tensor(0.5, dtype=torch.float64), 0.1))
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("z", dist.Normal(params["loc"], params["scale"]).to_event(1))

    model, guide, trace = replayed(model, guide)
    assert HFVAELoss().loss(model, guide) == pytest.approx(Trace_ELBO().loss(model, guide), rel=1e-12)
    loss_fn = HFVAELoss(2.0, 3.0, 4.0)
    loss = loss_fn.loss(model, guide)
    w = trace.nodes["w"]["value"]
    one = torch.tensor(1.0, dtype=torch.float64)
    global_elbo = dist.Normal(0 * one, one).log_prob(w) - dist.Normal(0.5 * one, 0.1 * one).log_prob(w)
    assert loss_fn.terms["global_elbo"] == pytest.approx(global_elbo.item(), rel=1e-12)
    assert loss == pytest.approx(-N * loss_fn.terms["objective"] - loss_fn.terms["global_elbo"], rel=1e-7)


def test_mask_and_scale_are_respected():
    params = make_params(seed=7)
    model, guide = make_model_guide(params)
    mask = torch.tensor([True, False, True, True, False, True])
    masked_model = poutine.scale(poutine.mask(model, mask=mask), scale=0.5)
    masked_guide = poutine.scale(poutine.mask(guide, mask=mask), scale=0.5)
    model_r, guide_r, _ = replayed(masked_model, masked_guide)
    assert HFVAELoss().loss(model_r, guide_r) == pytest.approx(Trace_ELBO().loss(model_r, guide_r), rel=1e-12)
    # Masked-out data points contribute no terms: the loss is that of the kept rows' L_b.
    trace = poutine.trace(guide).get_trace()
    unmasked = HFVAELoss(1.0, 3.0, 2.0)
    unmasked.loss(poutine.replay(model, trace), poutine.replay(guide, trace))
    masked = HFVAELoss(1.0, 3.0, 2.0)
    loss = masked.loss(poutine.replay(masked_model, trace), poutine.replay(masked_guide, trace))
    assert loss == pytest.approx(-0.5 * (N / B) * B * masked.terms["objective"], rel=1e-7)
    assert masked.terms["objective"] != pytest.approx(unmasked.terms["objective"])


@pytest.mark.parametrize("kernel", ["generic", "fused"])
def test_chunked_pairwise_tables_match(kernel):
    params = make_params(seed=8)
    for key in ["loc", "scale", "logits"]:
        params[key].requires_grad_(True)
    model, guide = make_model_guide(params)
    model, guide, _ = replayed(model, guide)
    leaves = [params["loc"], params["scale"], params["logits"]]
    whole = HFVAELoss(1.5, 4.0, 3.0, kernel="generic")
    chunked = HFVAELoss(1.5, 4.0, 3.0, pairwise_memory_mb=1e-4, kernel=kernel)
    loss_whole = whole.differentiable_loss(model, guide)
    loss_chunked = chunked.differentiable_loss(model, guide)
    assert loss_chunked.item() == pytest.approx(loss_whole.item(), rel=1e-12)
    grads_whole = torch.autograd.grad(loss_whole, leaves, retain_graph=True)
    for a, b in zip(grads_whole, torch.autograd.grad(loss_chunked, leaves)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("vectorized,memory", [(False, 1024.0), (True, 1024.0), (True, 1e-4)])
@pytest.mark.parametrize("concrete_scoring", ["relaxed", "argmax"])
def test_fused_kernels_equal_the_generic_path(vectorized, memory, concrete_scoring, monkeypatch):
    """Values and gradients of every dispatch: Concrete and Normal guides with particles, a nested plate,
    chunked rows and a batch-dependent Normal prior (the batch-mixture path), in float64."""
    from pyro_hfvae.ops import fused_marginals

    params = make_params(seed=10)
    inner = 2
    params["loc"] = torch.randn(B, inner, D, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    for key in ["logits", "loc", "scale", "weight"]:
        params[key].requires_grad_(True)
    temp = torch.tensor(TEMP, dtype=torch.float64)
    particles = 3 if vectorized else 1

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B), dim=-2):
            y = pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=torch.zeros(1, K, dtype=temp.dtype)))
            with pyro.plate("inner", inner, dim=-1):
                z = pyro.sample("z", dist.Normal(y[..., :1].expand(y.shape[:-2] + (inner, D)), 1.0).to_event(1))
            x_logits = torch.cat([y[..., 0, :], z.sum(-2)], -1) @ params["weight"]
            pyro.sample("x", dist.Bernoulli(logits=x_logits.unsqueeze(-2)).to_event(1), obs=params["x"][:, None])

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B), dim=-2):
            pyro.sample("y", dist.RelaxedOneHotCategorical(temp, logits=params["logits"][:, None]))
            with pyro.plate("inner", inner, dim=-1):
                pyro.sample("z", dist.Normal(params["loc"], params["scale"][:, None]).to_event(1))

    calls = {}
    for name, function in list(fused_marginals._EAGER.items()):
        def counted(*args, name=name, function=function):
            calls[name] = calls.get(name, 0) + 1
            return function(*args)

        monkeypatch.setitem(fused_marginals._EAGER, name, counted)
    kwargs = {"num_particles": particles, "vectorize_particles": vectorized, "max_plate_nesting": 2,
              "pairwise_memory_mb": memory, "concrete_scoring": concrete_scoring}
    leaves = [params[k] for k in ["logits", "loc", "scale", "weight"]]
    results = []
    for kernel in ["generic", "fused"]:
        loss_fn = HFVAELoss(1.5, 4.0, 3.0, kernel=kernel, **kwargs)
        pyro.set_rng_seed(0)  # the same samples for both
        loss = loss_fn.differentiable_loss(model, guide)
        results.append((loss, torch.autograd.grad(loss, leaves), loss_fn.terms))
    (generic, generic_grads, generic_terms), (fused, fused_grads, fused_terms) = results
    assert fused.item() == pytest.approx(generic.item(), rel=1e-12)
    for a, b in zip(fused_grads, generic_grads):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)
    for name, value in generic_terms.items():
        assert fused_terms[name] == pytest.approx(value, abs=1e-10), name
    # Normal: the guide's z, and z's batch-dependent prior; Concrete only where scored relaxed.
    assert calls["normal_forward"] >= 2 and calls["normal_backward"] >= 2
    assert ("concrete_forward" in calls) == (concrete_scoring == "relaxed")


@pytest.mark.parametrize("kernel", ["generic", "fused"])
def test_batch_dependent_prior_uses_batch_mixture(kernel):
    params = make_params(seed=9)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            z2 = pyro.sample("z2", dist.Normal(torch.zeros(1, dtype=torch.float64), 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(z2.expand(B, D), 0.5).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=z1 @ params["weight"][K:]).to_event(1), obs=params["x"])

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("z2", dist.Normal(params["loc"][:, :1], params["scale"][:, :1]).to_event(1))
            pyro.sample("z1", dist.Normal(params["loc"], params["scale"]).to_event(1))

    model, guide, trace = replayed(model, guide)
    loss_fn = HFVAELoss(1.0, 2.0, 2.0, kernel=kernel)
    loss_fn.loss(model, guide)
    z1, z2 = trace.nodes["z1"]["value"], trace.nodes["z2"]["value"]
    w = torch.full((B, B), math.log((N - 1) / (N * (B - 1))), dtype=torch.float64)
    w.fill_diagonal_(-math.log(N))
    q_d = dist.Normal(params["loc"].unsqueeze(0), params["scale"].unsqueeze(0)).log_prob(z1.unsqueeze(1))
    p_d = dist.Normal(z2.unsqueeze(0).expand(B, B, D), 0.5).log_prob(z1.unsqueeze(1))  # [b, b', d] = p(z1_b | z2_b')
    lqh_d = torch.logsumexp(q_d + w[..., None], 1)
    lp_d = torch.logsumexp(p_d, 1) - math.log(B)
    assert loss_fn.terms["dimwise_kl/z1"] == pytest.approx((lqh_d - lp_d).sum(-1).mean().item(), abs=1e-10)


def test_svi_and_elbo_module():
    torch.manual_seed(0)
    encoder = torch.nn.Linear(X_DIM, 2 * D)
    decoder = torch.nn.Linear(D, X_DIM)
    data = torch.randint(0, 2, (N, X_DIM)).float()

    def model(x, idx):
        pyro.module("decoder", decoder)
        with pyro.plate("data", size=N, subsample=idx):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([D]).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide(x, idx):
        pyro.module("encoder", encoder)
        with pyro.plate("data", size=N, subsample=idx):
            h = encoder(x)
            pyro.sample("z", dist.Normal(h[:, :D], h[:, D:].exp()).to_event(1))

    loss_fn = HFVAELoss(1.0, 4.0, 4.0)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=loss_fn)
    idx = torch.arange(10)
    losses = [svi.step(data[idx], idx) for _ in range(30)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    module = loss_fn(model, guide)
    value = module(data[idx], idx)
    value.backward()
    assert encoder.weight.grad is not None


# ---- bad input -----------------------------------------------------------------------------------


def _simple_pair(plate_kwargs, site_fn=None, guide_group=None, model_group=None, batch=B):
    def model():
        with pyro.plate("data", **plate_kwargs):
            pyro.sample(
                "z",
                dist.Normal(torch.zeros(batch, 2), 1.0).to_event(1),
                infer={"group": model_group} if model_group else {},
            )

    def guide():
        with pyro.plate("data", **plate_kwargs):
            fn = site_fn() if site_fn else dist.Normal(torch.zeros(batch, 2), 1.0).to_event(1)
            pyro.sample("z", fn, infer={"group": guide_group} if guide_group else {})

    return model, guide


@pytest.mark.parametrize(
    "plate_kwargs,loss_kwargs,batch,match",
    [
        ({"size": B}, {}, B, "dataset_size=N"),
        ({"size": 1}, {"dataset_size": 10}, 1, "at least 2"),
        ({"size": B}, {"dataset_size": 3}, B, "dataset_size >= batch size"),
        ({"size": N, "subsample": torch.arange(B)}, {"dataset_size": N + 1}, B, "make them agree"),
    ],
)
def test_data_plate_errors(plate_kwargs, loss_kwargs, batch, match):
    model, guide = _simple_pair(plate_kwargs, batch=batch)
    with pytest.raises(ValueError, match=match):
        HFVAELoss(**loss_kwargs).loss(model, guide)


@pytest.mark.parametrize("observed_in_plate", [False, True])
def test_only_global_latents_is_trace_elbo(observed_in_plate):
    # Nothing to decompose: no data-plate N is needed and the loss is Trace_ELBO's.
    def model():
        z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        if observed_in_plate:
            with pyro.plate("data", B):
                pyro.sample("x", dist.Normal(z, 1.0), obs=torch.arange(B, dtype=torch.float64))
        else:
            pyro.sample("x", dist.Normal(z, 1.0), obs=torch.tensor(0.5, dtype=torch.float64))

    def guide():
        pyro.sample("z", dist.Normal(torch.tensor(0.3, dtype=torch.float64), 0.5))

    model, guide, _ = replayed(model, guide)
    loss_fn = HFVAELoss(2.0, 3.0, 4.0)
    assert loss_fn.loss(model, guide) == pytest.approx(Trace_ELBO().loss(model, guide), rel=1e-12)
    assert loss_fn.terms["mutual_info"] == 0.0


def test_empty_guide_is_trace_elbo():
    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.linspace(-1, 1, B))

    assert HFVAELoss(2.0).loss(model, lambda: None) == pytest.approx(Trace_ELBO().loss(model, lambda: None))


def test_non_reparameterised_site_error():
    model, guide = _simple_pair(
        {"size": N, "subsample": torch.arange(B)}, site_fn=lambda: dist.Bernoulli(0.5 * torch.ones(B, 2)).to_event(1)
    )
    with pytest.raises(ValueError, match="no rsample"):
        HFVAELoss().loss(model, guide)


def test_enumerated_site_error():
    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("c", dist.Categorical(torch.ones(3)), infer={"enumerate": "parallel"})

    with pytest.raises(ValueError, match="enumerated"):
        HFVAELoss().loss(model, model)


def test_mismatched_groups_error():
    model, guide = _simple_pair({"size": N, "subsample": torch.arange(B)}, guide_group="a", model_group="b")
    with pytest.raises(ValueError, match="agree on the group"):
        HFVAELoss().loss(model, guide)


def test_site_named_like_group_error():
    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("a", dist.Normal(torch.zeros(B, 2), 1.0).to_event(1))
            pyro.sample("b", dist.Normal(torch.zeros(B, 2), 1.0).to_event(1), infer={"group": "a"})

    with pytest.raises(ValueError, match="share its name"):
        HFVAELoss().loss(guide, guide)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"beta": float("nan")}, "finite"),
        ({"concrete_scoring": "mode"}, "concrete_scoring"),
        ({"pairwise_memory_mb": 0}, "pairwise_memory_mb"),
        ({"kernel": "triton"}, "expected kernel in"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HFVAELoss(**kwargs)


def test_nan_names_site_and_term():
    loc = torch.zeros(B, 2)
    loc[2, 1] = float("nan")

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            z = pyro.sample("z", dist.Normal(torch.zeros(B, 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=torch.zeros(B, 2))

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("z", dist.Normal(loc, 1.0, validate_args=False).to_event(1))

    with pyro.validation_enabled(False):
        with pytest.raises(NonFiniteLossError, match=r"'z'") as info:
            HFVAELoss(1.0, 2.0, 2.0).loss(model, guide)
    assert "mutual_info" in str(info.value)


@pytest.mark.parametrize(
    "fn,invariant",
    [
        (dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(3)).expand([B]), True),
        (dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.randn(B, 3)), False),
        (dist.Normal(torch.zeros(3), 1.0).expand([B, 3]).to_event(1), True),
        (dist.Normal(torch.randn(B, 3), 1.0).to_event(1), False),
        (dist.MultivariateNormal(torch.zeros(3), torch.eye(3)).expand([B]), True),
        (dist.Dirichlet(torch.rand(B, 3) + 0.5), False),
    ],
)
def test_batch_invariant_priors_are_recognised(fn, invariant):
    # Invariant priors are scored exactly; the others by the (costlier) batch mixture.
    from pyro_hfvae.distributions.util import is_batch_invariant

    assert is_batch_invariant(fn, -1) is invariant
