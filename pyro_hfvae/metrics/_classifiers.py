# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""scikit-learn classifiers configured as disentanglement_lib used them (private)."""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier


def one_vs_rest_logistic_regression(random_state: np.random.RandomState) -> OneVsRestClassifier:
    """
    ``LogisticRegression()`` as scikit-learn < 0.22 defined it (what disentanglement_lib ran):
    liblinear, L2 penalty, C=1, one-vs-rest for more than two classes. Newer scikit-learn
    only offers one-vs-rest through :class:`~sklearn.multiclass.OneVsRestClassifier`.
    """
    return OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=random_state))
