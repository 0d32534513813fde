import math

import numpy as np
import pyro.distributions as dist
import pytest
import scipy.special
import torch
import torch.distributions
from pyro.distributions import Independent, Normal, RelaxedOneHotCategorical
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from pyro_hfvae.metrics import mutual_information, total_correlation


class KnownSampleNormal(Normal):
    """A Normal whose 'sample' is loc + scale * eps for a given eps, so tests know the samples."""

    def __init__(self, loc, scale, eps):
        super().__init__(loc, scale)
        self.eps = eps

    def sample(self, sample_shape=torch.Size()):
        return self.loc + self.scale * self.eps


class KnownSampleExpConcrete(ExpRelaxedCategorical):
    def __init__(self, temperature, logits, log_value):
        super().__init__(temperature, logits=logits)
        self.log_value = log_value

    def sample(self, sample_shape=torch.Size()):
        return self.log_value


class KnownSampleConcrete(RelaxedOneHotCategorical):
    """A Concrete whose sample is ``value``; the metrics sample its log (log_space_concrete): ``log(value)``."""

    def __init__(self, temperature, logits, value):
        super().__init__(temperature, logits=logits)
        self.value = value
        self.base_dist = KnownSampleExpConcrete(self.temperature, self.logits, value.log())

    def sample(self, sample_shape=torch.Size()):
        return self.value


TEMPERATURE = 0.5


def known_posterior(x):
    """Rows of x: a's loc (2), a's eps (2), b's loc, b's eps, c's logits (3), c's sample (3)."""
    return {
        "a": Independent(KnownSampleNormal(x[:, 0:2], 0.5 + 0.1 * x[:, 0:2].abs(), x[:, 2:4]), 1),
        "b": Independent(
            KnownSampleNormal(x[:, 4:5], torch.full_like(x[:, 4:5], 0.3), x[:, 5:6]), 1
        ),
        "c": KnownSampleConcrete(torch.tensor(TEMPERATURE, dtype=x.dtype), x[:, 6:9], x[:, 9:12]),
    }


def known_data(num_data=23, seed=0):
    rs = np.random.RandomState(seed)
    x = np.zeros((num_data, 12))
    x[:, 0:2] = rs.randn(num_data, 2)
    x[:, 2:4] = rs.randn(num_data, 2)
    x[:, 4] = 0.5 * rs.randn(num_data)
    x[:, 5] = rs.randn(num_data)
    x[:, 6:9] = 2.0 * rs.randn(num_data, 3)
    x[:, 9:12] = rs.dirichlet(np.ones(3), size=num_data)
    return torch.from_numpy(x)


def brute_force_log_densities(x):
    """[s, m, v] float64 log density of sample s's variable v under point m's posterior (loops)."""
    num_data = len(x)
    table = np.zeros((num_data, num_data, 4))
    for s in range(num_data):
        a_sample = x[s, 0:2] + (0.5 + 0.1 * x[s, 0:2].abs()) * x[s, 2:4]
        b_sample = x[s, 4] + 0.3 * x[s, 5]
        for m in range(num_data):
            for d in range(2):
                scale = 0.5 + 0.1 * abs(float(x[m, d]))
                table[s, m, d] = -0.5 * (
                    (float(a_sample[d]) - float(x[m, d])) / scale
                ) ** 2 - math.log(scale * math.sqrt(2 * math.pi))
            table[s, m, 2] = -0.5 * ((float(b_sample) - float(x[m, 4])) / 0.3) ** 2 - math.log(
                0.3 * math.sqrt(2 * math.pi)
            )
            concrete = RelaxedOneHotCategorical(
                torch.tensor(TEMPERATURE, dtype=torch.float64), logits=x[m, 6:9]
            )
            table[s, m, 3] = float(concrete.log_prob(x[s, 9:12]))
    return table


def brute_force_estimates(x):
    table = brute_force_log_densities(x)
    columns = {
        "a[0]": table[..., 0],
        "a[1]": table[..., 1],
        "b[0]": table[..., 2],
        "c": table[..., 3],
        "a": table[..., 0] + table[..., 1],
        "b": table[..., 2],
        "ab": table[..., 0] + table[..., 1] + table[..., 2],
        "total": table.sum(-1),
    }
    num_data = len(x)
    own = {name: np.diag(value) for name, value in columns.items()}
    aggregate = {
        name: scipy.special.logsumexp(value, axis=1) - math.log(num_data)
        for name, value in columns.items()
    }
    return own, aggregate


@pytest.mark.parametrize("as_batches", [False, True], ids=["tensor", "loader"])
@pytest.mark.parametrize("pairwise_memory_mb", [0.02, 1024.0])
def test_matches_brute_force_double_loop(as_batches, pairwise_memory_mb):
    x = known_data()
    data = [(x[:5], "labels"), (x[5:15], "labels"), (x[15:], "labels")] if as_batches else x
    groups = {"ab": ["a", "b"]}
    estimate = mutual_information(
        known_posterior, data, groups=groups, batch_size=4, pairwise_memory_mb=pairwise_memory_mb
    )
    own, aggregate = brute_force_estimates(x)
    expected = {name: np.mean(own[name] - aggregate[name]) for name in own}
    assert estimate.total == pytest.approx(expected["total"], abs=1e-10)
    assert estimate.groups == pytest.approx({"ab": expected["ab"], "c": expected["c"]}, abs=1e-10)
    assert estimate.sites == pytest.approx(
        {"a": expected["a"], "b": expected["b"], "c": expected["c"]}, abs=1e-10
    )
    np.testing.assert_allclose(
        estimate.variables["a"], [expected["a[0]"], expected["a[1]"]], atol=1e-10
    )
    np.testing.assert_allclose(estimate.variables["b"], [expected["b[0]"]], atol=1e-10)
    assert estimate.variables["c"].shape == ()
    assert (estimate.num_data, estimate.num_samples) == (23, 23)

    tc = total_correlation(
        known_posterior, data, groups=groups, batch_size=4, pairwise_memory_mb=pairwise_memory_mb
    )
    variable_sum = aggregate["a[0]"] + aggregate["a[1]"] + aggregate["b[0]"] + aggregate["c"]
    assert tc.total == pytest.approx(np.mean(aggregate["total"] - variable_sum), abs=1e-10)
    assert tc.between_groups == pytest.approx(
        np.mean(aggregate["total"] - aggregate["ab"] - aggregate["c"]), abs=1e-10
    )
    within_ab = np.mean(aggregate["ab"] - aggregate["a[0]"] - aggregate["a[1]"] - aggregate["b[0]"])
    assert tc.within_groups == pytest.approx({"ab": within_ab, "c": 0.0}, abs=1e-10)


def test_float32_posterior_agrees_with_float64_reference():
    x = known_data(seed=1)
    estimate = mutual_information(known_posterior, x.float(), batch_size=7)
    own, aggregate = brute_force_estimates(x)
    assert estimate.total == pytest.approx(np.mean(own["total"] - aggregate["total"]), abs=1e-4)


def test_sample_subset():
    x = known_data(num_data=30, seed=2)
    estimate = mutual_information(known_posterior, x, num_samples=10, random_state=4)
    own, aggregate = brute_force_estimates(x)
    rs = np.random.RandomState(4)
    rs.randint(2**31 - 1)  # the torch seed is drawn first, then the subset
    chosen = np.sort(rs.choice(30, size=10, replace=False))
    assert estimate.num_samples == 10
    assert estimate.total == pytest.approx(
        np.mean((own["total"] - aggregate["total"])[chosen]), abs=1e-10
    )


def gaussian_posterior(scale):
    return lambda x: dist.Normal(x, scale).to_event(1)


def test_identical_posteriors_carry_no_information():
    estimate = mutual_information(gaussian_posterior(1.0), torch.ones(50, 3), batch_size=16)
    assert estimate.total == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(estimate.variables["z"], 0.0, atol=1e-6)


def test_separated_posteriors_saturate_at_log_n():
    num_data = 64
    codes = torch.stack([torch.arange(num_data) * 10.0, torch.zeros(num_data)], dim=1)
    estimate = mutual_information(gaussian_posterior(0.1), codes, batch_size=10)
    assert estimate.total == pytest.approx(math.log(num_data), abs=1e-6)
    np.testing.assert_allclose(estimate.variables["z"], [math.log(num_data), 0.0], atol=1e-6)


def test_gaussian_mixture_entropy_by_quadrature():
    rs = np.random.RandomState(0)
    num_data, scale = 2000, 0.4
    means = rs.randn(num_data)
    grid = np.linspace(-7, 7, 20001)
    mixture = np.zeros_like(grid)
    for mean in means:  # brute force over the components, float64
        mixture += np.exp(-0.5 * ((grid - mean) / scale) ** 2) / (scale * math.sqrt(2 * math.pi))
    mixture /= num_data
    entropy = -np.trapezoid(mixture * np.log(mixture), grid)
    expected = entropy - 0.5 * math.log(2 * math.pi * math.e * scale**2)
    estimate = mutual_information(
        gaussian_posterior(scale), torch.from_numpy(means[:, None]), random_state=1
    )
    # Monte Carlo over one sample per point: standard error ~0.015 here.
    assert estimate.total == pytest.approx(expected, abs=0.05)


def test_concrete_at_low_temperature_is_finite_and_counts_classes():
    num_data, num_classes = 40, 4
    classes = torch.arange(num_data) % num_classes
    logits = 12.0 * torch.nn.functional.one_hot(classes, num_classes).double()

    def posterior(x):
        return {"y": RelaxedOneHotCategorical(torch.tensor(0.05, dtype=x.dtype), logits=x)}

    estimate = mutual_information(posterior, logits, batch_size=8)
    assert estimate.total == pytest.approx(math.log(num_classes), abs=0.05)

    def cold_posterior(x):  # samples underflow to exact zeros at this temperature
        return {"y": RelaxedOneHotCategorical(torch.tensor(0.01), logits=x)}

    many = 30.0 * torch.nn.functional.one_hot(torch.arange(60) % 20, 20).float()
    assert math.isfinite(mutual_information(cold_posterior, many).total)


def brute_force_concrete_information(logits, temperature, draws, seed=0):
    """I(x; y) of Concrete posteriors, float64 loops over the points in log space, averaged over draws."""
    generator = torch.Generator().manual_seed(seed)
    logits, num_classes = logits.double(), logits.shape[-1]
    log_norm = math.lgamma(num_classes) + (num_classes - 1) * math.log(temperature)
    estimates = []
    for _ in range(draws):
        uniform = torch.rand(logits.shape, dtype=torch.float64, generator=generator)
        log_values = ((logits - (-uniform.log()).log()) / temperature).log_softmax(-1)
        terms = []
        for log_value, own_logits in zip(log_values, logits):
            score = logits - temperature * log_value  # under every point's posterior
            log_density = log_norm + score.sum(-1) - num_classes * score.logsumexp(-1)
            own_score = own_logits - temperature * log_value
            own = log_norm + own_score.sum() - num_classes * own_score.logsumexp(-1)
            terms.append(float(own - (log_density.logsumexp(0) - math.log(len(logits)))))
        estimates.append(np.mean(terms))
    return float(np.mean(estimates))


@pytest.mark.parametrize("logit_scale", [1.0, 30.0, 100.0])
def test_confident_concrete_information_matches_log_space_brute_force(logit_scale):
    # Sampled and scored on the simplex in float32, logits 30 apart gave -23 nats (the true value about 5.8).
    generator = torch.Generator().manual_seed(1)
    logits = logit_scale * torch.randn(300, 3, generator=generator)

    def posterior(x):
        return {"y": RelaxedOneHotCategorical(torch.tensor(0.66), logits=x)}

    estimates = [mutual_information(posterior, logits, batch_size=100, random_state=seed).total for seed in range(4)]
    expected = brute_force_concrete_information(logits, 0.66, draws=4)
    assert min(estimates) > 0.0
    assert np.mean(estimates) == pytest.approx(expected, abs=0.1)


def test_plain_torch_distributions():
    def posterior(x):
        return {"z": torch.distributions.Independent(torch.distributions.Normal(x, 0.1), 1)}

    codes = torch.arange(8.0).reshape(8, 1) * 10
    assert mutual_information(posterior, codes).total == pytest.approx(math.log(8), abs=1e-6)


def test_multivariate_normal_is_one_variable():
    codes = torch.arange(12.0).reshape(6, 2)

    def posterior(x):
        return {"w": dist.MultivariateNormal(x, 0.01 * torch.eye(2))}

    estimate = mutual_information(posterior, codes)
    assert estimate.variables["w"].shape == ()
    assert float(estimate.variables["w"]) == pytest.approx(estimate.sites["w"], abs=1e-12)
    assert estimate.total == pytest.approx(math.log(6), abs=1e-6)


def test_total_correlation_closed_forms():
    copies = torch.arange(16.0).reshape(16, 1).expand(16, 2) * 10
    assert total_correlation(gaussian_posterior(0.1), copies).total == pytest.approx(
        math.log(16), abs=1e-6
    )
    grid = torch.cartesian_prod(torch.arange(4.0), torch.arange(5.0)) * 10
    tc = total_correlation(gaussian_posterior(0.1), grid)
    assert tc.total == pytest.approx(0.0, abs=1e-6)


def test_total_correlation_decomposes_exactly():
    x = known_data(seed=3)
    tc = total_correlation(known_posterior, x, groups={"ab": ["a", "b"]})
    assert tc.total == pytest.approx(tc.between_groups + sum(tc.within_groups.values()), abs=1e-12)


def test_deterministic_under_random_state():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    first = mutual_information(gaussian_posterior(0.5), x, random_state=7)
    assert (
        first.total
        == mutual_information(
            gaussian_posterior(0.5), x, random_state=np.random.RandomState(7)
        ).total
    )
    assert first.total != mutual_information(gaussian_posterior(0.5), x, random_state=8).total


@pytest.mark.parametrize(
    "groups, match",
    [
        ({"g": ["nope"]}, "among the sites"),
        ({"g": ["a"], "h": ["a", "b"]}, "at most one group"),
        ({"b": ["a"]}, "its own group"),
        ({"g": "a"}, "list site names"),
        ({"g": []}, "at least one site"),
    ],
)
def test_bad_groups(groups, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mutual_information(known_posterior, known_data(), groups=groups)


def test_bad_posteriors():
    with pytest.raises(TypeError, match="expected the posterior to return a torch Distribution"):
        mutual_information(lambda x: x, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"batch_shape \(4,\)"):
        mutual_information(lambda x: dist.Normal(x, 1.0), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="pairwise_memory_mb to be a finite number > 0"):
        mutual_information(gaussian_posterior(1.0), torch.zeros(4, 2), pairwise_memory_mb=0.0)
    with pytest.raises(ValueError, match="at least one batch"):
        mutual_information(gaussian_posterior(1.0), [])


def test_budget_below_one_row_warns_and_computes_row_by_row(caplog):
    x = known_data()
    with caplog.at_level("WARNING", logger="pyro_hfvae.ops.mixture"):
        estimate = mutual_information(known_posterior, x, batch_size=23, pairwise_memory_mb=1e-4)
    assert "below one row" in caplog.text
    own, aggregate = brute_force_estimates(x)
    assert estimate.total == pytest.approx(np.mean(own["total"] - aggregate["total"]), abs=1e-10)


class FixedNormal(Normal):
    """A Normal whose sample and rsample are loc + scale * eps (the loss and the metric see one sample)."""

    def __init__(self, loc, scale, eps):
        super().__init__(loc, scale)
        self.eps = eps

    def rsample(self, sample_shape=torch.Size()):
        return self.loc + self.scale * self.eps

    def sample(self, sample_shape=torch.Size()):
        return self.rsample().detach()

    def expand(self, batch_shape, _instance=None):
        assert tuple(batch_shape) == tuple(self.batch_shape)  # Pyro's plates expand to the same shape
        return self


def test_nested_total_correlation_equals_hfvae_loss_decomposition():
    """With N == B the loss's stratified weights are the metric's uniform whole-data weights."""
    import pyro
    from pyro import poutine

    from pyro_hfvae import HFVAELoss

    num = 7
    x = known_data(num_data=num, seed=5)[:, :6]  # a's loc and eps (2 + 2), b's loc and eps

    def posterior(x):
        return {
            "a": Independent(FixedNormal(x[:, 0:2], 0.5 + 0.1 * x[:, 0:2].abs(), x[:, 2:4]), 1),
            "b": Independent(FixedNormal(x[:, 4:5].expand(-1, 3), 0.4, x[:, 5:6].expand(-1, 3)), 1),
        }

    def model():
        with pyro.plate("data", num):
            pyro.sample("a", dist.Normal(torch.zeros(2, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("b", dist.Normal(torch.zeros(3, dtype=x.dtype), 1.0).to_event(1))

    def guide():
        fns = posterior(x)
        with pyro.plate("data", num):
            pyro.sample("a", fns["a"], infer={"group": "style/pose"})
            pyro.sample("b", fns["b"], infer={"group": "style/shape"})

    groups = {"style/pose": ["a"], "style/shape": ["b"]}
    loss = HFVAELoss(1.0, 2.0, 3.0, level_weights=[4.0], dataset_size=num)
    trace = poutine.trace(guide).get_trace()
    loss.loss(poutine.replay(model, trace=trace), poutine.replay(guide, trace=trace))
    tc = total_correlation(posterior, x, groups=groups)
    expected_names = {"tc_between", "tc_within", "tc_within_2", "tc_within/style", "tc_within/style/pose",
                      "tc_within/style/shape"}
    assert set(tc.terms) == expected_names
    for name in expected_names:
        assert tc.terms[name] == pytest.approx(loss.terms[name], abs=1e-10), name
    assert tc.terms["tc_within_2"] != pytest.approx(0.0, abs=1e-3)
    assert tc.between_groups == pytest.approx(tc.terms["tc_between"], abs=1e-12)
    assert tc.within_groups["style"] == pytest.approx(tc.terms["tc_within"] + tc.terms["tc_within_2"], abs=1e-10)
    assert tc.total == pytest.approx(sum(tc.terms[n] for n in ["tc_between", "tc_within", "tc_within_2"]), abs=1e-10)
    information = mutual_information(posterior, x, groups=groups)
    assert information.total == pytest.approx(loss.terms["mutual_info"], abs=1e-10)
    assert set(information.groups) == {"style", "style/pose", "style/shape"}
    assert information.groups["style/pose"] == pytest.approx(information.sites["a"], abs=1e-12)
