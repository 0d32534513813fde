import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import MultiLabelBinarizer
from sklearn.svm import LinearSVC

from pyro_hfvae.metrics import explicitness, sap


def split(seed, sizes=(2, 3, 4), num_train=600, num_test=400, noise=0.0, extra=2):
    rs = np.random.RandomState(seed)
    n = num_train + num_test
    factors = np.stack([rs.randint(s, size=n) for s in sizes], axis=1)
    codes = factors / (np.array(sizes) - 1.0) + noise * rs.randn(n, len(sizes))
    codes = np.hstack([codes, rs.randn(n, extra)])
    return codes[:num_train], factors[:num_train], codes[num_train:], factors[num_train:]


def test_sap_continuous_matches_covariance_loop():
    codes_train, factors_train, codes_test, factors_test = split(0, noise=0.3)
    score = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    for i, code in enumerate(codes_train.T):
        for k, factor in enumerate(factors_train.T):
            cov = np.cov(code, factor, ddof=1)
            score[i, k] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
    top = np.sort(score, axis=0)
    expected = np.mean(top[-1] - top[-2])
    assert sap(
        codes_train, factors_train, codes_test, factors_test, continuous=True
    ) == pytest.approx(expected, abs=1e-12)


def test_sap_discrete_matches_svm_loop_with_disentanglement_lib_solver():
    codes_train, factors_train, codes_test, factors_test = split(1, noise=0.2)
    score = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    for i in range(codes_train.shape[1]):
        for k in range(factors_train.shape[1]):
            # disentanglement_lib's (dual) solver, run to convergence: the same optimum as the
            # primal.
            classifier = LinearSVC(
                C=0.01, class_weight="balanced", dual=True, max_iter=100000, tol=1e-8
            )
            classifier.fit(codes_train[:, i : i + 1], factors_train[:, k])
            score[i, k] = np.mean(
                classifier.predict(codes_test[:, i : i + 1]) == factors_test[:, k]
            )
    top = np.sort(score, axis=0)
    expected = np.mean(top[-1] - top[-2])
    assert sap(codes_train, factors_train, codes_test, factors_test) == pytest.approx(
        expected, abs=1e-12
    )


def test_sap_binary_factors_perfect_codes():
    codes_train, factors_train, codes_test, factors_test = split(2, sizes=(2, 2, 2), extra=0)
    # Each code predicts its own factor perfectly and the others at chance (~0.5).
    assert sap(codes_train, factors_train, codes_test, factors_test) == pytest.approx(0.5, abs=0.06)
    duplicated = sap(
        np.hstack([codes_train, codes_train]),
        factors_train,
        np.hstack([codes_test, codes_test]),
        factors_test,
    )
    assert duplicated == 0.0


def reference_explicitness(codes_train, factors_train, codes_test, factors_test):
    """disentanglement_lib's explicitness with its LogisticRegression() (liblinear, ovr)."""
    mean, std = codes_train.mean(0), codes_train.std(0)
    x_train, x_test = (codes_train - mean) / std, (codes_test - mean) / std
    train, test = [], []
    for y_train, y_test in zip(factors_train.T, factors_test.T):
        clf = OneVsRestClassifier(LogisticRegression(solver="liblinear")).fit(x_train, y_train)
        mlb = MultiLabelBinarizer()
        train.append(roc_auc_score(mlb.fit_transform(y_train[:, None]), clf.predict_proba(x_train)))
        test.append(roc_auc_score(mlb.fit_transform(y_test[:, None]), clf.predict_proba(x_test)))
    return np.mean(train), np.mean(test)


@pytest.mark.parametrize("noise", [0.1, 1.0])
def test_explicitness_matches_disentanglement_lib_definition(noise):
    data = split(3, noise=noise)
    expected_train, expected_test = reference_explicitness(*data)
    scores = explicitness(*data)
    assert scores["train"] == pytest.approx(expected_train, abs=1e-12)
    assert scores["test"] == pytest.approx(expected_test, abs=1e-12)


def test_explicitness_perfect_and_random():
    perfect = explicitness(*split(4, extra=0))
    assert perfect["train"] > 0.99 and perfect["test"] > 0.99
    codes_train, factors_train, codes_test, factors_test = split(5)
    rs = np.random.RandomState(6)
    random = explicitness(
        rs.randn(*codes_train.shape), factors_train, rs.randn(*codes_test.shape), factors_test
    )
    assert random["test"] == pytest.approx(0.5, abs=0.05)


def test_explicitness_constant_code_and_missing_test_class():
    codes_train, factors_train, codes_test, factors_test = split(7, noise=0.1)
    with_constant = explicitness(
        np.hstack([codes_train, np.ones((len(codes_train), 1))]),
        factors_train,
        np.hstack([codes_test, np.ones((len(codes_test), 1))]),
        factors_test,
    )
    assert np.isfinite(list(with_constant.values())).all()
    keep = factors_test[:, 2] != 0  # class 0 of the 4-valued factor absent from the test split
    scores = explicitness(codes_train, factors_train, codes_test[keep], factors_test[keep])
    assert 0.5 < scores["test"] <= 1.0
