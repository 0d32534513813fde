# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Run a set of disentanglement metrics on one encoder, sampling the codes once."""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pyro_hfvae.metrics._checks import RandomStateLike, as_random_state, check_positive_int
from pyro_hfvae.metrics.beta_vae import beta_vae_score
from pyro_hfvae.metrics.dci import dci
from pyro_hfvae.metrics.explicitness import explicitness
from pyro_hfvae.metrics.factor_vae import factor_vae_score
from pyro_hfvae.metrics.mig import mig
from pyro_hfvae.metrics.mig_sup import mig_sup
from pyro_hfvae.metrics.modularity import modularity
from pyro_hfvae.metrics.sampling import Encoder, check_dataset, sample_codes
from pyro_hfvae.metrics.sap import sap

logger = logging.getLogger(__name__)

__all__ = [
    "METRICS",
    "evaluate",
]

# Metrics on codes sampled once (train split only, or train and test) and metrics with
# their own sampling protocol.
_TRAIN_METRICS = {"mig": mig, "mig_sup": mig_sup, "modularity": modularity}
_TRAIN_TEST_METRICS = {"explicitness": explicitness, "sap": sap, "dci": dci}
_SAMPLING_METRICS = {"factor_vae": factor_vae_score, "beta_vae": beta_vae_score}

#: Names :func:`evaluate` accepts, in the order it runs them.
METRICS = tuple(_TRAIN_METRICS) + tuple(_TRAIN_TEST_METRICS) + tuple(_SAMPLING_METRICS)


def evaluate(
    dataset,
    encode: Encoder,
    metrics: Sequence[str] = METRICS,
    random_state: RandomStateLike = 0,
    num_train: int = 10000,
    num_test: int = 5000,
    batch_size: int = 16,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, float]:
    """
    Evaluates an encoder with several metrics, sampling codes once for all array metrics.

    ``num_train`` (and, for explicitness, SAP and DCI, ``num_test``) factor tuples are
    drawn with :func:`sample_codes` (disentanglement_lib's protocol and defaults) and
    shared by ``mig``, ``mig_sup``, ``modularity``, ``explicitness``, ``sap`` and ``dci``;
    ``factor_vae`` and ``beta_vae`` sample their own votes. All randomness comes from one
    :class:`numpy.random.RandomState`, in the order of :data:`METRICS`, so a seed fixes
    every number. Metrics that return several values are flattened with the metric name
    as prefix (``dci_disentanglement``, ``explicitness_test``, ``factor_vae_eval_accuracy``, ...).
    DCI fits a gradient-boosted classifier per factor and dominates the run time on
    factors with many classes (minutes for dSprites' 40-valued orientation).

    :param dataset: ground-truth data set (see :mod:`pyro_hfvae.metrics.sampling`).
    :param callable encode: observations -> posterior means (n, num_codes), torch or numpy.
    :param metrics: names from :data:`METRICS`.
    :param random_state: seed or :class:`numpy.random.RandomState`.
    :type random_state: int or numpy.random.RandomState
    :param int num_train: points for the training split.
    :param int num_test: points for the test split.
    :param int batch_size: points per sampling and encoder call for the shared codes.
    :param dict options: extra keyword arguments per metric, e.g.
        ``{"mig": {"num_bins": 10}, "factor_vae": {"num_train": 1000}}``.
    :returns: metric name (with prefix) -> value.
    :rtype: dict

    Example::

        >>> import numpy as np, torch
        >>> class Grid:
        ...     num_factors = 2
        ...     def sample_factors(self, n, random_state):
        ...         return random_state.randint(3, size=(n, 2))
        ...     def sample_observations_from_factors(self, factors, random_state):
        ...         return torch.as_tensor(factors, dtype=torch.float32)
        >>> scores = evaluate(Grid(), lambda x: x, metrics=["mig", "factor_vae"], num_train=1000,
        ...                   options={"factor_vae": {"num_train": 100, "num_eval": 50}})
        >>> list(scores)[:3]
        ['mig', 'factor_vae_train_accuracy', 'factor_vae_eval_accuracy']
        >>> round(scores["mig"], 2), scores["factor_vae_eval_accuracy"]
        (1.0, 1.0)
    """
    check_dataset(dataset)
    metrics = list(metrics)
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(
            f"expected metric names from {list(METRICS)} but got unknown names {unknown}"
        )
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"expected each metric name once but got {metrics}")
    options = dict(options or {})
    stray = [name for name in options if name not in metrics]
    if stray:
        raise ValueError(
            f"expected options only for the chosen metrics {metrics} but got options for {stray}"
        )
    num_train = check_positive_int(num_train, "num_train")
    num_test = check_positive_int(num_test, "num_test")
    random_state = as_random_state(random_state)

    scores: dict[str, float] = {}

    def record(name: str, value) -> None:
        if isinstance(value, Mapping):
            scores.update({f"{name}_{key}": float(item) for key, item in value.items()})
        else:
            scores[name] = float(value)

    train = test = None
    if any(name in _TRAIN_METRICS or name in _TRAIN_TEST_METRICS for name in metrics):
        train = sample_codes(dataset, encode, num_train, random_state, batch_size)
    if any(name in _TRAIN_TEST_METRICS for name in metrics):
        test = sample_codes(dataset, encode, num_test, random_state, batch_size)
    for name in METRICS:
        if name not in metrics:
            continue
        kwargs = dict(options.get(name, {}))
        logger.info("evaluate: computing %s", name)
        if name in _TRAIN_METRICS:
            record(name, _TRAIN_METRICS[name](*train, **kwargs))
        elif name in _TRAIN_TEST_METRICS:
            kwargs.setdefault("random_state", random_state)
            record(name, _TRAIN_TEST_METRICS[name](*train, *test, **kwargs))
        else:
            kwargs.setdefault("random_state", random_state)
            record(name, _SAMPLING_METRICS[name](dataset, encode, **kwargs))
    return scores
