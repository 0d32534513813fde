# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Separated Attribute Predictability (SAP) score."""

import numpy as np
import torch
from sklearn.svm import LinearSVC

from pyro_hfvae.metrics._checks import (
    RandomStateLike,
    as_random_state,
    as_train_test,
    check_min_columns,
    to_numpy,
)

__all__ = [
    "sap",
]


def _squared_correlation(codes: torch.Tensor, factors: np.ndarray) -> torch.Tensor:
    """(num_codes, num_factors) squared Pearson correlations; 0 for codes of variance <= 1e-12."""
    x = codes.to(torch.float64)
    y = torch.as_tensor(factors, dtype=torch.float64, device=x.device)
    x = x - x.mean(0)
    y = y - y.mean(0)
    n = x.shape[0]
    covariance = x.T @ y / (n - 1)
    var_x = x.square().sum(0) / (n - 1)
    var_y = y.square().sum(0) / (n - 1)
    active = var_x > 1e-12
    safe_var_x = torch.where(active, var_x, torch.ones_like(var_x))
    score = covariance.square() / (safe_var_x[:, None] * var_y[None, :])
    return torch.where(active[:, None], score, torch.zeros_like(score))


def _classification_accuracy(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    random_state: np.random.RandomState,
) -> np.ndarray:
    """(num_codes, num_factors) test accuracy of a linear SVM predicting a factor from one code."""
    score = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    # One classifier per (code, factor) pair is the definition; each fit sees a single feature.
    for i in range(codes_train.shape[1]):
        for k in range(factors_train.shape[1]):
            classifier = LinearSVC(
                C=0.01, class_weight="balanced", dual=False, random_state=random_state
            )
            classifier.fit(codes_train[:, i : i + 1], factors_train[:, k])
            score[i, k] = np.mean(
                classifier.predict(codes_test[:, i : i + 1]) == factors_test[:, k]
            )
    return score


def sap(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    continuous: bool = False,
    random_state: RandomStateLike = 0,
) -> float:
    r"""
    SAP score: per factor, the gap between the two codes that predict it best, averaged.

    The score matrix :math:`S_{jk}` says how well code :math:`j` alone predicts factor
    :math:`k`: for discrete factors (default) the test accuracy of a linear SVM
    (``LinearSVC(C=0.01, class_weight="balanced")``) trained on the single code; for
    ``continuous=True`` the squared Pearson correlation on the training split,
    :math:`\mathrm{Cov}(c_j, v_k)^2 / (\mathrm{Var}\, c_j \,\mathrm{Var}\, v_k)` (0 where
    :math:`\mathrm{Var}\, c_j \le 10^{-12}`). Then

    .. math::

        \mathrm{SAP} = \frac{1}{K} \sum_k \left( S_{j^{(1)}_k k} - S_{j^{(2)}_k k} \right)

    with :math:`j^{(1)}_k, j^{(2)}_k` the best and second-best codes for factor :math:`k`.
    Matches disentanglement_lib's ``SAP_score``; the SVM is solved in the primal
    (``dual=False``), whose optimum is the same as the dual's that disentanglement_lib
    ran but which converges on one-feature problems.

    :param codes_train: training representations, shape (num_train, num_codes), num_codes >= 2.
    :param factors_train: their integer factor classes, shape (num_train, num_factors).
    :param codes_test: test representations, shape (num_test, num_codes) (unused when continuous).
    :param factors_test: their integer factor classes, shape (num_test, num_factors).
    :param bool continuous: treat factors as continuous (squared correlation) instead of classes.
    :param random_state: seed or :class:`numpy.random.RandomState` for the SVM solver.
    :type random_state: int or numpy.random.RandomState
    :returns: SAP score in [0, 1].
    :rtype: float

    Example::

        >>> import numpy as np
        >>> factors = np.random.RandomState(0).randint(3, size=(200, 2))
        >>> train, test = factors[:100], factors[100:]
        >>> round(sap(train, train, test, test, continuous=True), 2)
        1.0

    References

    [1] Variational Inference of Disentangled Latent Concepts from Unlabeled Observations,
        Abhishek Kumar, Prasanna Sattigeri, Avinash Balakrishnan (ICLR 2018)
    """
    codes_train, factors_train, codes_test, factors_test = as_train_test(
        codes_train, factors_train, codes_test, factors_test
    )
    check_min_columns(
        codes_train.shape, 2, "codes_train", "SAP compares the two most predictive codes"
    )
    if continuous:
        score = _squared_correlation(codes_train, factors_train).cpu().numpy()
    else:
        score = _classification_accuracy(
            to_numpy(codes_train),
            factors_train,
            to_numpy(codes_test),
            factors_test,
            as_random_state(random_state),
        )
    top_two = -np.sort(-score, axis=0)[:2]
    return float(np.mean(top_two[0] - top_two[1]))
