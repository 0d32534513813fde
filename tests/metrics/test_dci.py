import math

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

from pyro_hfvae.metrics import FOREST_DEPTHS, dci, disentanglement_completeness, forest_dci

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


FACTOR_SIZES = np.array([3, 6, 10])


def noisy_code(seed, num_points, noise):
    """Each factor scaled to [0, 1] plus Gaussian noise of sd ``noise``: one code per factor."""
    rng = np.random.RandomState(seed)
    factors = np.stack([rng.randint(size, size=num_points) for size in FACTOR_SIZES], axis=1)
    return factors / (FACTOR_SIZES - 1) + noise * rng.randn(num_points, len(FACTOR_SIZES)), factors


@pytest.mark.parametrize("max_depth", [None, 4, "validation"])
def test_forest_dci_of_a_perfect_and_of_an_uninformative_code(max_depth):
    codes, factors = noisy_code(0, 600, noise=0.0)
    perfect = forest_dci(codes[:400], factors[:400], codes[400:], factors[400:], 10, max_depth)
    assert perfect["disentanglement"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["completeness"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["informativeness_test"] == pytest.approx(1.0, abs=1e-6)
    noise = np.random.RandomState(1).randn(600, 3)
    useless = forest_dci(noise[:400], factors[:400], noise[400:], factors[400:], 10, max_depth)
    assert useless["disentanglement"] < 0.15 and useless["informativeness_test"] < 0.05


def test_forest_dci_matches_importances_of_forests_fitted_here():
    codes, factors = noisy_code(2, 500, noise=0.1)
    scores = forest_dci(codes[:400], factors[:400], codes[400:], factors[400:], num_trees=5, max_depth=4,
                        random_state=7)
    importance = np.stack([
        RandomForestRegressor(5, max_depth=4, random_state=7)
        .fit(codes[:400], factors[:400, k] / (size - 1)).feature_importances_
        for k, size in enumerate(FACTOR_SIZES)
    ], axis=1)
    expected = disentanglement_completeness(importance)
    np.testing.assert_allclose(scores["importance"], importance, atol=1e-12)
    assert scores["disentanglement"] == pytest.approx(expected["disentanglement"], abs=1e-12)
    assert scores["completeness"] == pytest.approx(expected["completeness"], abs=1e-12)
    assert scores["max_depths"] == [4, 4, 4]


def test_forest_dci_chooses_each_depth_on_the_validation_fifth_only():
    codes, factors = noisy_code(3, 1000, noise=0.2)
    train, test = (codes[:800], factors[:800]), (codes[800:], factors[800:])
    scores = forest_dci(*train, *test, num_trees=5, max_depth="validation", random_state=1)
    for k, size in enumerate(FACTOR_SIZES):  # the brute-force choice: fit on 640, score on 160
        validation = [
            RandomForestRegressor(5, max_depth=depth, random_state=1)
            .fit(codes[:640], factors[:640, k] / (size - 1))
            .score(codes[640:800], factors[640:800, k] / (size - 1))
            for depth in FOREST_DEPTHS
        ]
        assert scores["max_depths"][k] == FOREST_DEPTHS[int(np.argmax(validation))]
    shuffled = forest_dci(*train, test[0], np.random.RandomState(0).permutation(test[1]), num_trees=5,
                          max_depth="validation", random_state=1)
    assert shuffled["max_depths"] == scores["max_depths"]
    assert shuffled["disentanglement"] == scores["disentanglement"]
    assert shuffled["informativeness_test"] < scores["informativeness_test"]


def test_full_depth_forests_read_noise_as_entanglement():
    # Why the depth is a choice: full-depth trees fit the noise with splits on the other codes.
    codes, factors = noisy_code(4, 3000, noise=0.2)
    full = forest_dci(codes[:2000], factors[:2000], codes[2000:], factors[2000:], 20, None)
    chosen = forest_dci(codes[:2000], factors[:2000], codes[2000:], factors[2000:], 20, "validation")
    assert chosen["disentanglement"] > 0.8
    assert full["disentanglement"] < chosen["disentanglement"] - 0.2
    assert None not in chosen["max_depths"]


@pytest.mark.parametrize("max_depth", [0, -1, "auto", 2.5])
def test_forest_dci_rejects_a_bad_depth(max_depth):
    codes, factors = noisy_code(0, 50, noise=0.0)
    with pytest.raises(ValueError, match="expected max_depth"):
        forest_dci(codes, factors, codes, factors, 2, max_depth)
