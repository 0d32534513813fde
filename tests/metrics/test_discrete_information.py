import numpy as np
import pytest
import sklearn.metrics
import torch

from pyro_hfvae.metrics import (
    discrete_entropy,
    discrete_mutual_information,
    mig,
    mig_sup,
    modularity,
)
from pyro_hfvae.metrics.discrete_information import histogram_bins

DSPRITES_SIZES = np.array([3, 6, 40, 32, 32])


def reference_bins(codes, num_bins):
    """disentanglement_lib's _histogram_discretize, one column at a time."""
    return np.stack([np.digitize(c, np.histogram(c, num_bins)[1][:-1]) for c in codes.T], axis=1)


def reference_mutual_information(codes, factors, num_bins=20):
    bins = reference_bins(codes, num_bins)
    return np.array([[sklearn.metrics.mutual_info_score(f, b) for f in factors.T] for b in bins.T])


def reference_entropy(factors):
    return np.array([sklearn.metrics.mutual_info_score(f, f) for f in factors.T])


def make_codes(kind, seed, num_samples=2000):
    rs = np.random.RandomState(seed)
    factors = np.stack([rs.randint(s, size=num_samples) for s in DSPRITES_SIZES], axis=1)
    exact = factors / (DSPRITES_SIZES - 1.0)  # values fall exactly on bin edges
    codes = {
        "exact": exact,
        "noisy": exact + 0.1 * rs.randn(*exact.shape),
        "constant_column": np.hstack([exact, np.full((num_samples, 1), 3.0)]),
        "offset": 100.0 + 1e-3 * rs.randn(num_samples, 3),
        "heavy_tailed": rs.standard_cauchy((num_samples, 4)),
    }[kind]
    return codes, factors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["exact", "noisy", "constant_column", "offset", "heavy_tailed"])
@pytest.mark.parametrize("num_bins", [20, 7])
def test_bins_match_numpy(kind, dtype, num_bins):
    codes, _ = make_codes(kind, seed=1)
    codes = codes.astype(dtype)
    bins = histogram_bins(torch.from_numpy(codes), num_bins).numpy()
    np.testing.assert_array_equal(bins + 1, reference_bins(codes, num_bins))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["exact", "noisy", "constant_column", "heavy_tailed"])
def test_mutual_information_matches_sklearn_loop(kind, dtype):
    codes, factors = make_codes(kind, seed=2)
    codes = codes.astype(dtype)
    expected = reference_mutual_information(codes, factors)
    np.testing.assert_allclose(
        discrete_mutual_information(codes, factors), expected, rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        discrete_mutual_information(torch.from_numpy(codes), torch.from_numpy(factors)),
        expected,
        rtol=0,
        atol=1e-12,
    )


def test_mutual_information_ignores_factor_label_values():
    codes, factors = make_codes("noisy", seed=3)
    relabelled = factors * 7 - 100  # negative, sparse labels
    np.testing.assert_allclose(
        discrete_mutual_information(codes, relabelled),
        discrete_mutual_information(codes, factors),
        atol=1e-14,
    )


def test_entropy_matches_sklearn():
    _, factors = make_codes("exact", seed=4)
    np.testing.assert_allclose(discrete_entropy(factors), reference_entropy(factors), atol=1e-12)


def reference_mig(codes, factors):
    m = reference_mutual_information(codes, factors)
    top = np.sort(m, axis=0)[::-1]
    return np.mean((top[0] - top[1]) / reference_entropy(factors))


def reference_mig_sup(codes, factors, active_variance=0.01):
    m = reference_mutual_information(codes, factors) / reference_entropy(factors)[None, :]
    gaps = []
    for j, row in enumerate(m):
        if np.var(codes[:, j], ddof=1) > active_variance:
            best = np.sort(row)[::-1]
            gaps.append(best[0] - best[1])
    return np.mean(gaps)


def reference_modularity(mutual_information):
    squared = mutual_information**2
    largest = squared.max(axis=1)
    score = 1.0 - (squared.sum(axis=1) - largest) / (largest * (squared.shape[1] - 1.0))
    score[largest == 0] = 0.0
    return np.mean(score)


@pytest.mark.parametrize("kind", ["exact", "noisy", "constant_column", "heavy_tailed"])
def test_metrics_match_reference_formulas(kind):
    codes, factors = make_codes(kind, seed=5)
    codes = np.hstack([codes, 0.05 * codes[:, :1] + np.random.RandomState(6).randn(len(codes), 1)])
    assert mig(codes, factors) == pytest.approx(reference_mig(codes, factors), abs=1e-12)
    assert mig_sup(codes, factors) == pytest.approx(reference_mig_sup(codes, factors), abs=1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected_modularity = reference_modularity(reference_mutual_information(codes, factors))
    assert modularity(codes, factors) == pytest.approx(expected_modularity, abs=1e-12)


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a,
        lambda a: a.astype(np.float32),
        lambda a: torch.from_numpy(a),
        lambda a: torch.from_numpy(a).float(),
    ],
    ids=["numpy64", "numpy32", "torch64", "torch32"],
)
def test_accepts_numpy_and_torch_of_either_precision(convert):
    codes, factors = make_codes("noisy", seed=7)
    expected = mig(codes, factors)
    # The noisy codes never fall on a bin edge, so the precision does not change the bins.
    assert mig(convert(codes), factors) == pytest.approx(expected, abs=1e-12)
    assert mig(convert(codes), torch.from_numpy(factors)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.cuda
def test_cuda_codes_give_the_cpu_value():
    codes, factors = make_codes("noisy", seed=8)
    assert mig(torch.from_numpy(codes).cuda(), factors) == pytest.approx(
        mig(codes, factors), abs=1e-12
    )
    assert modularity(torch.from_numpy(codes).cuda(), factors) == pytest.approx(
        modularity(codes, factors), abs=1e-12
    )
