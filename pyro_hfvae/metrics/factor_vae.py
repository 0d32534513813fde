# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""The FactorVAE disentanglement score (Kim & Mnih), with vectorised voting."""

import logging

import numpy as np
import torch

from pyro_hfvae.metrics._checks import RandomStateLike, as_random_state, check_positive_int
from pyro_hfvae.metrics.sampling import (
    Encoder,
    check_dataset,
    encode_observations,
    sample_factor_array,
)

logger = logging.getLogger(__name__)

__all__ = [
    "factor_vae_score",
]


def encode_factors(
    dataset,
    encode: Encoder,
    factors: np.ndarray,
    random_state: np.random.RandomState,
    encode_batch_size: int,
) -> torch.Tensor:
    """Renders and encodes ``factors`` (n, F), ``encode_batch_size`` at a time; returns (n, C)."""
    codes = [
        encode_observations(
            encode,
            dataset.sample_observations_from_factors(
                factors[start : start + encode_batch_size], random_state
            ),
        )
        for start in range(0, len(factors), encode_batch_size)
    ]
    return torch.cat(codes)


def fixed_factor_batches(
    dataset, num_batches: int, batch_size: int, random_state: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """
    ``num_batches`` batches of ``batch_size`` factor tuples drawn uniformly, each sharing the
    value of one uniformly chosen factor: returns (factor index (num_batches,),
    factors (num_batches, batch_size, F)).
    """
    fixed = random_state.randint(dataset.num_factors, size=num_batches)
    factors = sample_factor_array(dataset, num_batches * batch_size, random_state)
    factors = factors.reshape(num_batches, batch_size, dataset.num_factors)
    rows = np.arange(num_batches)
    factors[rows, :, fixed] = factors[rows, 0, fixed][:, None]
    return fixed, factors


def _votes(
    dataset,
    encode: Encoder,
    num_votes: int,
    batch_size: int,
    random_state: np.random.RandomState,
    global_variance: torch.Tensor,
    active: torch.Tensor,
    encode_batch_size: int,
) -> np.ndarray:
    """(num_factors, num_active) counts of (fixed factor, code of least normalised variance)."""
    fixed, factors = fixed_factor_batches(dataset, num_votes, batch_size, random_state)
    votes_per_chunk = max(1, encode_batch_size // batch_size)
    scale = global_variance[active]
    argmins = []
    for start in range(0, num_votes, votes_per_chunk):
        chunk = factors[start : start + votes_per_chunk]
        flat = chunk.reshape(-1, dataset.num_factors)
        codes = encode_observations(
            encode, dataset.sample_observations_from_factors(flat, random_state)
        )
        codes = codes.to(torch.float64).view(len(chunk), batch_size, -1)[
            :, :, active.to(codes.device)
        ]
        local_variance = codes.var(dim=1)
        argmins.append((local_variance / scale.to(codes.device)).argmin(dim=1).cpu())
    num_active = int(active.sum())
    index = torch.from_numpy(fixed) * num_active + torch.cat(argmins)
    return (
        torch.bincount(index, minlength=dataset.num_factors * num_active)
        .view(-1, num_active)
        .numpy()
    )


def factor_vae_score(
    dataset,
    encode: Encoder,
    random_state: RandomStateLike = 0,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
    encode_batch_size: int = 4096,
) -> dict[str, float]:
    r"""
    FactorVAE score: accuracy of a majority-vote classifier that names the fixed factor
    from the code with the smallest normalised variance.

    The global variance :math:`s_j^2` of every code (``ddof=1``) is estimated on
    ``num_variance_estimate`` random points; codes with :math:`s_j <` ``prune_threshold``
    are pruned. Each vote fixes one uniformly chosen factor :math:`k` across a batch of
    ``batch_size`` random factor tuples, encodes them and votes for
    :math:`(k, \arg\min_j \mathrm{Var}_{\text{batch}}(c_j) / s_j^2)` over active codes.
    The classifier maps each code to the factor with most training votes; the score is

    .. math::

        \text{accuracy} = \frac{\sum_j V_{\hat k(j), j}}{\sum_{k, j} V_{k j}}, \qquad
        \hat k(j) = \arg\max_k V^{\text{train}}_{k j},

    on the ``num_train`` training votes and on ``num_eval`` fresh evaluation votes.
    Votes are drawn all at once and encoded ``encode_batch_size`` observations at a time,
    so the encoder dominates the run time. Same estimator as disentanglement_lib, which
    draws vote by vote: the same seed gives different (equally distributed) votes.

    :param dataset: ground-truth data set (see :mod:`pyro_hfvae.metrics.sampling`).
    :param callable encode: observations -> posterior means (n, num_codes), torch or numpy.
    :param random_state: seed or :class:`numpy.random.RandomState` (advanced in place).
    :type random_state: int or numpy.random.RandomState
    :param int batch_size: points per vote (>= 2).
    :param int num_train: training votes.
    :param int num_eval: evaluation votes.
    :param int num_variance_estimate: points for the global variances.
    :param float prune_threshold: codes whose global standard deviation is below this are ignored.
    :param int encode_batch_size: most observations per encoder call (whole votes at a time).
    :returns: ``{"train_accuracy", "eval_accuracy", "num_active_dims"}``; the accuracies
        are 0 when no code is active.
    :rtype: dict

    Example::

        >>> import numpy as np, torch
        >>> class Grid:
        ...     num_factors = 2
        ...     def sample_factors(self, n, random_state):
        ...         return random_state.randint(3, size=(n, 2))
        ...     def sample_observations_from_factors(self, factors, random_state):
        ...         return torch.as_tensor(factors, dtype=torch.float32)
        >>> factor_vae_score(Grid(), lambda x: x, num_train=100, num_eval=50,
        ...                  num_variance_estimate=100)
        {'train_accuracy': 1.0, 'eval_accuracy': 1.0, 'num_active_dims': 2.0}

    References

    [1] Disentangling by Factorising, Hyunjik Kim, Andriy Mnih (ICML 2018)
    """
    check_dataset(dataset)
    batch_size = check_positive_int(batch_size, "batch_size", minimum=2)
    num_train = check_positive_int(num_train, "num_train")
    num_eval = check_positive_int(num_eval, "num_eval")
    num_variance_estimate = check_positive_int(
        num_variance_estimate, "num_variance_estimate", minimum=2
    )
    encode_batch_size = check_positive_int(encode_batch_size, "encode_batch_size")
    random_state = as_random_state(random_state)

    factors = sample_factor_array(dataset, num_variance_estimate, random_state)
    codes = encode_factors(dataset, encode, factors, random_state, encode_batch_size)
    global_variance = codes.to(torch.float64).var(dim=0)
    active = global_variance.sqrt() >= prune_threshold
    num_active = int(active.sum())
    if num_active == 0:
        logger.warning(
            "factor_vae_score: no code has standard deviation >= prune_threshold=%g",
            prune_threshold,
        )
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}

    train_votes = _votes(
        dataset,
        encode,
        num_train,
        batch_size,
        random_state,
        global_variance,
        active,
        encode_batch_size,
    )
    classifier = train_votes.argmax(axis=0)
    columns = np.arange(num_active)
    eval_votes = _votes(
        dataset,
        encode,
        num_eval,
        batch_size,
        random_state,
        global_variance,
        active,
        encode_batch_size,
    )
    return {
        "train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
        "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
        "num_active_dims": float(num_active),
    }
