# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Explicitness (Ridgeway & Mozer): linear readability of each factor."""

import numpy as np
from sklearn.metrics import roc_auc_score

from pyro_hfvae.metrics._checks import (
    RandomStateLike,
    as_random_state,
    as_train_test,
    to_numpy,
)
from pyro_hfvae.metrics._classifiers import one_vs_rest_logistic_regression

__all__ = [
    "explicitness",
]


def _macro_auc(classes: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean one-vs-rest ROC-AUC over the classes both present and absent in ``labels``."""
    one_hot = labels[:, None] == classes[None, :]
    scorable = one_hot.any(0) & (~one_hot).any(0)
    if not scorable.any():
        raise ValueError(
            "expected test factors with at least two classes seen in training "
            f"({classes.tolist()}) but got {np.unique(labels).tolist()}; sample more test points"
        )
    return float(
        np.mean([roc_auc_score(one_hot[:, c], scores[:, c]) for c in np.flatnonzero(scorable)])
    )


def explicitness(
    codes_train, factors_train, codes_test, factors_test, random_state: RandomStateLike = 0
) -> dict[str, float]:
    r"""
    Explicitness: per factor, the one-vs-rest ROC-AUC of a logistic regression from all
    codes to the factor's classes, averaged over classes (macro) and then over factors.

    Codes are standardised with the training mean and standard deviation (``ddof=0``);
    for factor :math:`k` with classes :math:`v`, a one-vs-rest L2 logistic regression
    (liblinear, :math:`C = 1`) gives scores :math:`s_v(c)`, and

    .. math::

        \mathrm{explicitness} = \frac{1}{K} \sum_k \frac{1}{|V_k|} \sum_{v \in V_k}
            \mathrm{AUC}\big(\mathbb{1}[v_k = v],\ s_v(c)\big).

    Matches disentanglement_lib's ``explicitness_score_train`` / ``_test``, except that a
    constant code is left unscaled instead of divided by zero, and a class absent from a
    split is left out of that split's average instead of raising.

    :param codes_train: training representations, shape (num_train, num_codes).
    :param factors_train: their integer factor classes, shape (num_train, num_factors).
    :param codes_test: test representations, shape (num_test, num_codes).
    :param factors_test: their integer factor classes, shape (num_test, num_factors).
    :param random_state: seed or :class:`numpy.random.RandomState` for the solver.
    :type random_state: int or numpy.random.RandomState
    :returns: ``{"train": ..., "test": ...}`` mean ROC-AUC in [0, 1] (0.5 is chance).
    :rtype: dict

    Example::

        >>> import numpy as np
        >>> factors = np.random.RandomState(0).randint(3, size=(200, 2))
        >>> scores = explicitness(factors[:100], factors[:100], factors[100:], factors[100:])
        >>> scores["test"] > 0.9
        True

    References

    [1] Learning Deep Disentangled Embeddings With the F-Statistic Loss,
        Karl Ridgeway, Michael C. Mozer (NeurIPS 2018)
    """
    codes_train, factors_train, codes_test, factors_test = as_train_test(
        codes_train, factors_train, codes_test, factors_test
    )
    random_state = as_random_state(random_state)
    x_train = to_numpy(codes_train)
    x_test = to_numpy(codes_test)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    x_train = (x_train - mean) / std
    x_test = (x_test - mean) / std
    train_scores, test_scores = [], []
    for k in range(factors_train.shape[1]):
        classifier = one_vs_rest_logistic_regression(random_state).fit(x_train, factors_train[:, k])
        classes = classifier.classes_
        train_scores.append(
            _macro_auc(classes, factors_train[:, k], classifier.predict_proba(x_train))
        )
        test_scores.append(
            _macro_auc(classes, factors_test[:, k], classifier.predict_proba(x_test))
        )
    return {"train": float(np.mean(train_scores)), "test": float(np.mean(test_scores))}
