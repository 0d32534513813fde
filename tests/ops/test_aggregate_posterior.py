import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_hfvae import HFVAELoss
from pyro_hfvae.ops import aggregate_log_marginals

B, N, TEMP = 6, 50, 0.6


def make_posteriors(seed=0):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(B, 3, generator=g, dtype=torch.float64)
    scale = 0.4 + torch.rand(B, 3, generator=g, dtype=torch.float64)
    logits = torch.randn(B, 3, generator=g, dtype=torch.float64)
    posteriors = {
        "a": dist.Normal(loc[:, :2], scale[:, :2]).to_event(1),
        "b": dist.Normal(loc[:, 2], scale[:, 2]),
        "c": dist.RelaxedOneHotCategorical(torch.tensor(TEMP, dtype=torch.float64), logits=logits),
    }
    values = {name: fn.rsample() for name, fn in posteriors.items()}
    return loc, scale, logits, posteriors, values


def logsumexp(xs):
    top = max(xs)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(x - top) for x in xs))


def concrete_log_density(x, logits, lam):
    """Maddison et al. (2017), written out."""
    probs = [math.exp(v) / sum(math.exp(u) for u in logits) for v in logits]
    k = len(x)
    log_num = math.lgamma(k) + (k - 1) * math.log(lam) + sum(math.log(p) - (lam + 1) * math.log(xi)
                                                             for p, xi in zip(probs, x))
    return log_num - k * math.log(sum(p * xi ** (-lam) for p, xi in zip(probs, x)))


def normal_log_density(v, m, s):
    return -0.5 * ((v - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)


def brute_force(loc, scale, logits, values, dataset_size):
    """[target][b] log marginals by explicit double loops; targets: a0, a1, b, c, a, style, joint."""
    a, b_, c = values["a"].tolist(), values["b"].tolist(), values["c"].tolist()
    n = B if dataset_size is None else dataset_size

    def log_w(b, bp):
        return -math.log(n) if b == bp else math.log((n - 1) / (n * (B - 1)))

    def lq(b, bp):
        out = {
            "a0": normal_log_density(a[b][0], loc[bp][0].item(), scale[bp][0].item()),
            "a1": normal_log_density(a[b][1], loc[bp][1].item(), scale[bp][1].item()),
            "b": normal_log_density(b_[b], loc[bp][2].item(), scale[bp][2].item()),
            "c": concrete_log_density(c[b], logits[bp].tolist(), TEMP),
        }
        out["a"] = out["a0"] + out["a1"]
        out["style"] = out["a"] + out["b"]
        out["joint"] = out["style"] + out["c"]
        return out

    tables = [[lq(b, bp) for bp in range(B)] for b in range(B)]
    return {t: [logsumexp([tables[b][bp][t] + log_w(b, bp) for bp in range(B)]) for b in range(B)]
            for t in tables[0][0]}


@pytest.mark.parametrize("dataset_size", [None, B, N])
@pytest.mark.parametrize("pairwise_memory_mb", [1e-5, 1024.0])
@pytest.mark.parametrize("kernel", ["generic", "fused"])
def test_matches_brute_force_double_loop(dataset_size, pairwise_memory_mb, kernel):
    loc, scale, logits, posteriors, values = make_posteriors()
    out = aggregate_log_marginals(values, posteriors, {"style/pose": ["a"], "style/rest": ["b"]}, dataset_size,
                                  pairwise_memory_mb=pairwise_memory_mb, kernel=kernel)
    expected = {k: torch.tensor(v, dtype=torch.float64) for k, v in brute_force(loc, scale, logits, values,
                                                                                 dataset_size).items()}
    assert list(out.nodes) == ["", "style", "style/pose", "style/rest", "c"]
    assert torch.allclose(out.joint, expected["joint"], atol=1e-10)
    assert torch.allclose(out.nodes["style"], expected["style"], atol=1e-10)
    assert torch.allclose(out.nodes["style/pose"], expected["a"], atol=1e-10)
    assert torch.allclose(out.nodes["style/rest"], expected["b"], atol=1e-10)
    assert torch.allclose(out.nodes["c"], expected["c"], atol=1e-10)
    assert torch.allclose(out.sites["a"], expected["a"], atol=1e-10)
    assert torch.allclose(out.variables["a"], torch.stack([expected["a0"], expected["a1"]], -1), atol=1e-10)
    assert out.variables["b"].shape == (B, 1) and out.variables["c"].shape == (B, 1)
    assert torch.allclose(out.variables["c"][:, 0], expected["c"], atol=1e-10)
    tc = out.tc_terms()
    assert torch.allclose(tc["tc_between"], expected["joint"] - expected["style"] - expected["c"], atol=1e-10)
    assert torch.allclose(tc["tc_within/style"], expected["style"] - expected["a"] - expected["b"], atol=1e-10)
    assert torch.allclose(tc["tc_within_2"], expected["a"] - expected["a0"] - expected["a1"], atol=1e-10)
    assert "tc_within/style/rest" not in tc  # one variable: no total correlation


def test_agrees_with_hfvae_loss_terms():
    """The functional estimator recomputes HFVAELoss's decomposition from the same samples."""
    loc, scale, logits, _, _ = make_posteriors(seed=1)
    weight = torch.randn(6, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = torch.randint(0, 2, (B, 4), generator=torch.Generator().manual_seed(3)).double()
    temp = torch.tensor(TEMP, dtype=torch.float64)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            a = pyro.sample("a", dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1))
            b = pyro.sample("b", dist.Normal(torch.zeros((), dtype=torch.float64), 1.0))
            c = pyro.sample("c", dist.RelaxedOneHotCategorical(temp, logits=torch.zeros(3, dtype=torch.float64)))
            pyro.sample("x", dist.Bernoulli(logits=torch.cat([a, b[:, None], c], -1) @ weight).to_event(1), obs=x)

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("a", dist.Normal(loc[:, :2], scale[:, :2]).to_event(1), infer={"group": "style/pose"})
            pyro.sample("b", dist.Normal(loc[:, 2], scale[:, 2]), infer={"group": "style/rest"})
            pyro.sample("c", dist.RelaxedOneHotCategorical(temp, logits=logits))

    pyro.set_rng_seed(0)
    trace = poutine.trace(guide).get_trace()
    loss = HFVAELoss(1.0, 2.0, 3.0, level_weights=[4.0])
    loss.loss(poutine.replay(model, trace=trace), poutine.replay(guide, trace=trace))
    sites = ["a", "b", "c"]
    values = {s: trace.nodes[s]["value"] for s in sites}
    posteriors = {s: trace.nodes[s]["fn"] for s in sites}
    out = aggregate_log_marginals(values, posteriors, {"style/pose": ["a"], "style/rest": ["b"]}, N)
    log_q = sum(posteriors[s].log_prob(values[s]) for s in sites)
    assert loss.terms["mutual_info"] == pytest.approx((log_q - out.joint).mean().item(), abs=1e-10)
    tc = out.tc_terms()
    for name in ["tc_between", "tc_within", "tc_within_2", "tc_within/style", "tc_within/style/pose"]:
        assert loss.terms[name] == pytest.approx(tc[name].mean().item(), abs=1e-10), name
    priors = {"a": dist.Normal(0.0, 1.0).expand([2]).to_event(1), "b": dist.Normal(0.0, 1.0),
              "c": dist.RelaxedOneHotCategorical(temp, logits=torch.zeros(3, dtype=torch.float64))}
    dimwise = sum((out.variables[s].sum(-1) - priors[s].log_prob(values[s])) for s in sites)
    assert loss.terms["dimwise_kl"] == pytest.approx(dimwise.mean().item(), abs=1e-10)


def test_uniform_posteriors_with_data_dependent_supports():
    g = torch.Generator().manual_seed(0)
    centre = (torch.arange(B, dtype=torch.float64) * 0.7).reshape(B, 1).repeat(1, 2)
    centre[:, 1] *= -1.5
    centre.requires_grad_(True)
    fn = dist.Uniform(centre - 1, centre + 1, validate_args=True).to_event(1)
    value = centre + (2 * torch.rand(B, 2, generator=g, dtype=torch.float64) - 1) * 0.999
    out = aggregate_log_marginals({"u": value}, {"u": fn}, dataset_size=N)
    v, cen = value.tolist(), centre.tolist()

    def lq(b, bp, d):
        return -math.log(2.0) if cen[bp][d] - 1 <= v[b][d] <= cen[bp][d] + 1 else -math.inf

    def log_w(b, bp):
        return -math.log(N) if b == bp else math.log((N - 1) / (N * (B - 1)))

    some_out_of_support = any(lq(b, bp, 1) == -math.inf for b in range(B) for bp in range(B))
    assert some_out_of_support
    joint = [logsumexp([lq(b, bp, 0) + lq(b, bp, 1) + log_w(b, bp) for bp in range(B)]) for b in range(B)]
    per_var = [[logsumexp([lq(b, bp, d) + log_w(b, bp) for bp in range(B)]) for d in range(2)] for b in range(B)]
    assert torch.allclose(out.joint, torch.tensor(joint, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out.variables["u"], torch.tensor(per_var, dtype=torch.float64), atol=1e-12)
    (out.joint.sum() + out.variables["u"].sum() + out.tc_terms()["tc_within/u"].sum()).backward()
    assert torch.isfinite(centre.grad).all()


def test_uniform_guide_in_hfvae_loss_has_finite_gradients():
    centre = (torch.arange(B, dtype=torch.float64) * 0.8).reshape(B, 1).repeat(1, 2).requires_grad_(True)

    def model():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("u", dist.Normal(torch.zeros(2, dtype=torch.float64), 3.0).to_event(1))

    def guide():
        with pyro.plate("data", size=N, subsample=torch.arange(B)):
            pyro.sample("u", dist.Uniform(centre - 1, centre + 1, validate_args=True).to_event(1))

    pyro.set_rng_seed(0)
    loss = HFVAELoss(1.0, 2.0, 3.0).differentiable_loss(model, guide)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(centre.grad).all()


@pytest.mark.parametrize(
    "values, posteriors, match",
    [
        ({}, {}, "non-empty sites"),
        ({"z": torch.zeros(3)}, {"z": dist.Normal(torch.zeros(()), 1.0)}, "batch_shape"),
        ({"z": torch.zeros(3, 2)}, {"z": dist.Normal(torch.zeros(3), 1.0)}, r"values\['z'\] of shape"),
    ],
)
def test_bad_input(values, posteriors, match):
    with pytest.raises(ValueError, match=match):
        aggregate_log_marginals(values, posteriors)


def test_dataset_size_below_batch_size_is_an_error():
    with pytest.raises(ValueError, match="batch_size <= dataset_size"):
        aggregate_log_marginals({"z": torch.zeros(4)}, {"z": dist.Normal(torch.zeros(4), 1.0)}, dataset_size=3)


def test_ops_import_neither_training_metrics_nor_heavy_libraries():
    import subprocess
    import sys

    code = (
        "import sys, pyro_hfvae, pyro_hfvae.ops; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('matplotlib', 'sklearn', 'scipy', 'arviz', 'networkx') "
        "or m.startswith(('pyro_hfvae.training', 'pyro_hfvae.metrics'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_total_correlations_need_a_tree():
    from pyro_hfvae.ops import mixture_log_marginals

    table = torch.zeros(1, 2, 2, 1)
    out = mixture_log_marginals({"z": lambda rows: table[:, rows]}, (1, 2, 2), {"z": 1})
    assert out.nodes == {} and out.variables["z"].shape == (1, 2, 1)
    with pytest.raises(ValueError, match="group tree"):
        out.tc_terms()


def test_memory_estimate_counts_every_class_of_a_concrete_site(monkeypatch):
    # A Concrete site is one variable but K elements of the pairwise tables: the chunking must count all K.
    import pyro_hfvae.ops.mixture as mixture
    from pyro_hfvae.ops import tree_marginals
    from pyro_hfvae.ops.aggregate_posterior import VariableScore
    from pyro_hfvae.poutine import PlateLayout, build_group_tree

    num_classes, batch = 50, 6
    temperature = torch.tensor(0.5, dtype=torch.float64)

    def guide():
        with pyro.plate("data", 100, subsample_size=batch):
            pyro.sample("y", dist.RelaxedOneHotCategorical(temperature, logits=torch.zeros(batch, num_classes,
                                                                                          dtype=torch.float64)))

    trace = pyro.poutine.trace(guide).get_trace()
    seen = []
    original = mixture._rows_per_chunk
    monkeypatch.setattr(mixture, "_rows_per_chunk", lambda rows, row_bytes, mb: seen.append(row_bytes)
                        or original(rows, row_bytes, mb))
    site = trace.nodes["y"]
    tree_marginals(PlateLayout.from_trace(trace), build_group_tree({"y": None}), {"y": site["value"]},
                   {"y": site["fn"]}, VariableScore({"y": 0}), {"y": 1})
    assert seen and seen[0] >= mixture._TEMPORARIES_PER_ELEMENT * num_classes * batch * 8
