"""SPEC section 4 cross-check values (dSprites factor sizes, 10,000 uniformly drawn points)."""

import numpy as np
import pytest

from pyro_hfvae.metrics import mig, modularity, modularity_from_mutual_information

SIZES = np.array([3, 6, 40, 32, 32])
NUM_POINTS = 10000


def dsprites_like(seed):
    rs = np.random.RandomState(seed)
    factors = np.stack([rs.randint(size, size=NUM_POINTS) for size in SIZES], axis=1)
    return rs, factors, factors / (SIZES - 1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_perfect_code_with_two_noise_dims(seed):
    rs, factors, code = dsprites_like(seed)
    codes = np.hstack([code, rs.randn(NUM_POINTS, 2)])
    # 40- and 32-valued factors cannot fill 20 bins' worth of entropy: 0.8955, not 1.
    assert mig(codes, factors) == pytest.approx(0.8955, abs=0.0015)
    # The noise dims' modularity varies with the draw (std ~0.009 over seeds).
    assert modularity(codes, factors) == pytest.approx(0.8998, abs=0.03)


@pytest.mark.parametrize("seed", [0, 1])
def test_code_with_gaussian_noise(seed):
    rs, factors, code = dsprites_like(seed)
    assert mig(code + 0.1 * rs.randn(*code.shape), factors) == pytest.approx(0.5018, abs=0.003)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_code(seed):
    rs, factors, _ = dsprites_like(seed)
    assert mig(rs.randn(NUM_POINTS, 7), factors) == pytest.approx(0.0004, abs=0.0005)


def test_duplicated_code():
    _, factors, code = dsprites_like(0)
    assert mig(np.hstack([code, code]), factors) == 0.0


# disentanglement_lib's modularity anchors (modularity_explicitness_test.py).
@pytest.mark.parametrize(
    "matrix, expected",
    [
        (np.diag(5.0 * np.ones(5)), 1.0),
        (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 2.0 / 3.0),
        (np.zeros((10, 10)), 0.0),
        (np.vstack([np.diag(5.0 * np.ones(5))] * 2), 1.0),
        (np.diag(5.0 * np.ones(5))[:2, :], 1.0),
        (np.hstack([np.diag(5.0 * np.ones(5))] * 2), 1.0 - 1.0 / 9.0),
    ],
    ids=[
        "diagonal",
        "empty_code",
        "zero",
        "redundant_codes",
        "missed_factors",
        "one_code_two_factors",
    ],
)
def test_modularity_anchors(matrix, expected):
    assert modularity_from_mutual_information(matrix) == pytest.approx(expected, abs=1e-12)
