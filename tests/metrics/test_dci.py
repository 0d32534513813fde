import math

import numpy as np
import pytest

from pyro_hfvae.metrics import dci, disentanglement_completeness

DIAGONAL = np.diag(5.0 * np.ones(5))
ONE_MINUS_LN2_OVER_LN10 = 1.0 - math.log(2) / math.log(10)


# disentanglement_lib's anchors (dci_test.py) and SPEC section 4.
@pytest.mark.parametrize(
    "matrix, disentanglement, completeness",
    [
        (DIAGONAL, 1.0, 1.0),
        (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),
        (np.zeros((10, 10)), 0.0, 0.0),
        (np.vstack([DIAGONAL, DIAGONAL]), 1.0, ONE_MINUS_LN2_OVER_LN10),
        (DIAGONAL[:2, :], 1.0, 1.0),
        (np.hstack([DIAGONAL, DIAGONAL]), ONE_MINUS_LN2_OVER_LN10, 1.0),
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
def test_importance_anchors(matrix, disentanglement, completeness):
    scores = disentanglement_completeness(matrix)
    assert scores["disentanglement"] == pytest.approx(disentanglement, abs=1e-7)
    assert scores["completeness"] == pytest.approx(completeness, abs=1e-7)


def test_importance_matches_scipy_entropy_definition():
    import scipy.stats

    matrix = np.random.RandomState(0).rand(6, 4) ** 3
    per_code = 1.0 - scipy.stats.entropy(matrix.T + 1e-11, base=4)
    per_factor = 1.0 - scipy.stats.entropy(matrix + 1e-11, base=6)
    expected_d = np.sum(per_code * matrix.sum(1) / matrix.sum())
    expected_c = np.sum(per_factor * matrix.sum(0) / matrix.sum())
    scores = disentanglement_completeness(matrix)
    assert scores["disentanglement"] == pytest.approx(expected_d, abs=1e-12)
    assert scores["completeness"] == pytest.approx(expected_c, abs=1e-12)


def identity_data(seed, num_points, num_factors=3, num_classes=3):
    factors = np.random.RandomState(seed).randint(num_classes, size=(num_points, num_factors))
    return factors.astype(np.float64), factors


def test_perfect_and_duplicated_codes():
    codes_train, factors_train = identity_data(0, 150)
    codes_test, factors_test = identity_data(1, 100)
    scores = dci(codes_train, factors_train, codes_test, factors_test)
    assert set(scores) == {
        "disentanglement",
        "completeness",
        "informativeness_train",
        "informativeness_test",
    }
    assert 0.9 <= scores["disentanglement"] <= 1.0
    assert 0.9 <= scores["completeness"] <= 1.0
    assert scores["informativeness_train"] == 1.0
    assert scores["informativeness_test"] == 1.0
    duplicated = dci(
        np.hstack([codes_train, codes_train]),
        factors_train,
        np.hstack([codes_test, codes_test]),
        factors_test,
    )
    assert 0.9 <= duplicated["disentanglement"] <= 1.0
    # Two equally useful copies split each factor's importance: C = 1 - log 2 / log 6.
    assert duplicated["completeness"] == pytest.approx(1.0 - math.log(2) / math.log(6), abs=0.1)


def test_permuted_codes_are_not_disentangled():
    codes_train, factors_train = identity_data(0, 200)
    codes_test, factors_test = identity_data(1, 100)
    rs = np.random.RandomState(2)
    scores = dci(
        np.stack([rs.permutation(c) for c in codes_train.T], 1),
        factors_train,
        np.stack([rs.permutation(c) for c in codes_test.T], 1),
        factors_test,
    )
    assert scores["disentanglement"] < 0.2
    assert scores["completeness"] < 0.2


def test_deterministic_under_random_state():
    rs = np.random.RandomState(0)
    factors = rs.randint(2, size=(200, 2))
    codes = factors + 0.5 * rs.randn(200, 2)
    first = dci(codes[:150], factors[:150], codes[150:], factors[150:], random_state=3)
    second = dci(
        codes[:150],
        factors[:150],
        codes[150:],
        factors[150:],
        random_state=np.random.RandomState(3),
    )
    assert first == second
