import itertools
import math

import numpy as np
import pytest
import scipy.stats

from pyro_hfvae.training import holm, paired_comparison


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_seeds", [3, 5, 8])
def test_paired_tests_against_hand_computations(seed, num_seeds):
    rng = np.random.default_rng(seed)
    first, second = rng.normal(0.5, 0.1, num_seeds), rng.normal(0.45, 0.1, num_seeds)
    comparison = paired_comparison(first.tolist(), second.tolist())
    d = first - second
    assert comparison.num_seeds == num_seeds and comparison.ahead == sum(x > 0 for x in d)
    mean = sum(d) / num_seeds
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (num_seeds - 1))
    assert comparison.mean == pytest.approx(mean) and comparison.sd == pytest.approx(sd)
    t = mean / (sd / math.sqrt(num_seeds))
    assert comparison.t_p == pytest.approx(2 * scipy.stats.t.sf(abs(t), num_seeds - 1))
    # The exact signed-rank test: the share of the 2^n sign patterns whose rank sum is as extreme.
    ranks = scipy.stats.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    sums = [sum(r for r, sign in zip(ranks, signs) if sign) for signs in itertools.product([0, 1], repeat=num_seeds)]
    centre = ranks.sum() / 2
    exact = np.mean([abs(s - centre) >= abs(observed - centre) - 1e-9 for s in sums])
    assert comparison.wilcoxon_p == pytest.approx(exact)


def test_undefined_tests_and_bad_input():
    assert math.isnan(paired_comparison([0.5], [0.4]).t_p) and math.isnan(paired_comparison([0.5], [0.4]).sd)
    assert math.isnan(paired_comparison([1.0, 2.0], [0.0, 1.0]).t_p)  # no spread
    assert paired_comparison([0.5, 0.6], [0.5, 0.6]).wilcoxon_p == 1.0
    with pytest.raises(ValueError, match="expected two equal-length lists"):
        paired_comparison([0.5, 0.6], [0.4])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("size", [1, 2, 4, 7])
def test_holm_against_the_step_down_procedure(seed, size):
    # The procedure as Holm states it: walk the sorted p-values, rejecting at level alpha while
    # p_(i) < alpha / (m - i + 1); the adjusted p of a test is the smallest alpha that rejects it.
    rng = np.random.default_rng(seed)
    p_values = rng.uniform(0.0, 0.2, size).tolist()
    adjusted = holm(p_values)
    order = sorted(range(size), key=p_values.__getitem__)

    def rejected(alpha):
        out = set()
        for i, index in enumerate(order):
            if not p_values[index] < alpha / (size - i):
                break
            out.add(index)
        return out

    for index in range(size):
        # Rejection grows with alpha, so bisect for the smallest alpha that rejects.
        low, high = 0.0, 1.0 + 1e-9
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (low, middle) if index in rejected(middle) else (middle, high)
        assert adjusted[index] == pytest.approx(min(high, 1.0), abs=1e-9)
    assert all(a >= p for a, p in zip(adjusted, p_values))


def test_holm_keeps_undefined_tests_out_of_the_family():
    adjusted = holm([0.01, math.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert holm([]) == [] and holm([0.6, 0.7]) == [1.0, 1.0]


@pytest.mark.parametrize("digits", [1, 3])
def test_format_differences_prints_each_signed_difference_in_seed_order(digits):
    comparison = paired_comparison([0.71, 0.5, 0.3], [0.5, 0.62, 0.3])
    cells = comparison.format_differences(digits).split(", ")
    assert [float(cell) for cell in cells] == pytest.approx([0.21, -0.12, 0.0], abs=0.5 * 10.0 ** -digits)
    assert all(cell[0] in "+-" and len(cell.split(".")[1]) == digits for cell in cells)
