# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
MIG and MIG-sup from the posterior over a whole factor grid (beta-TCVAE / pro-VLAE estimator).

Unlike :func:`~pyro_hfvae.metrics.mig`, which bins posterior means of sampled points, these
estimate :math:`H(z_j)` and :math:`H(z_j | v_k)` from the exact posterior mixture over every
item of the data set, and normalise by the factor entropy (:math:`\\log |v_k|` on a full grid).
The data set is used by duck typing: ``len(dataset)``, ``dataset.factors_of(indices) ->
(n, num_factors)`` int array, and ``dataset.observations(indices)`` (or, failing that,
``dataset.sample_observations_from_factors``); ``factor_names`` is used when present.
"""

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from pyro_hfvae.metrics._checks import (
    RandomStateLike,
    as_random_state,
    check_positive_int,
    torch_seed,
)
from pyro_hfvae.metrics._posterior_mixture import (
    Posterior,
    SiteLayout,
    as_site_mapping,
    choose_samples,
    sample_sites,
)
from pyro_hfvae.ops.mixture import check_memory_budget
from pyro_hfvae.util import forked_rng

logger = logging.getLogger(__name__)

__all__ = [
    "mig_posterior",
    "mig_sup_posterior",
]

# dSprites' factor sizes (the official file adds a constant colour factor); beta-TCVAE and
# pro-VLAE leave its shape factor out of MIG.
_DSPRITES_FACTOR_SIZES = (3, 6, 40, 32, 32)


def _factor_names(dataset, num_factors: int) -> list[str]:
    names = list(getattr(dataset, "factor_names", ()) or ())
    return names if len(names) == num_factors else [f"factor_{k}" for k in range(num_factors)]


def _all_factors(dataset) -> np.ndarray:
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "factors_of")):
        raise TypeError(
            "expected a data set with __len__ and factors_of(indices) (every item and its "
            f"factor classes) but got {type(dataset).__name__}; the posterior MIG needs the "
            "whole factor grid, not samples"
        )
    num_items = len(dataset)
    factors = np.asarray(dataset.factors_of(np.arange(num_items)))
    if factors.ndim != 2 or factors.shape[0] != num_items or factors.dtype.kind not in "iu":
        raise ValueError(
            f"expected {type(dataset).__name__}.factors_of(np.arange({num_items})) to return an "
            f"integer array of shape ({num_items}, num_factors) but got dtype {factors.dtype} "
            f"and shape {factors.shape}"
        )
    return factors.astype(np.int64, copy=False)


def _kept_factors(names: list[str], factors: np.ndarray, exclude_factors) -> list[int]:
    num_values = [np.unique(column).size for column in factors.T]
    if exclude_factors is None:
        varying = tuple(size for size in num_values if size > 1)
        excluded = {"shape"} if varying == _DSPRITES_FACTOR_SIZES and "shape" in names else set()
        excluded |= {name for name, size in zip(names, num_values) if size == 1}
    else:
        if isinstance(exclude_factors, str):
            raise TypeError(
                f"expected exclude_factors to be a sequence of names but got the string "
                f"{exclude_factors!r}; write ({exclude_factors!r},)"
            )
        excluded = set(exclude_factors)
        unknown = excluded - set(names)
        if unknown:
            raise ValueError(
                f"expected exclude_factors among the factor names {names} but got {sorted(unknown)}"
            )
        constant = [
            name for name, size in zip(names, num_values) if size == 1 and name not in excluded
        ]
        if constant:
            raise ValueError(
                f"expected every kept factor to take at least 2 values but {constant} take one; "
                "add them to exclude_factors"
            )
    kept = [k for k, name in enumerate(names) if name not in excluded]
    logger.info(
        "posterior MIG over factors %s (excluded %s)", [names[k] for k in kept], sorted(excluded)
    )
    return kept


class _Grid:
    """Observations and posteriors of data-set items, in batches."""

    def __init__(
        self,
        dataset,
        posterior: Posterior,
        factors: np.ndarray,
        batch_size: int,
        random_state: np.random.RandomState,
    ) -> None:
        self.dataset = dataset
        self.posterior = posterior
        self.factors = factors
        self.batch_size = batch_size
        self.random_state = random_state
        self.layout: SiteLayout | None = None

    def observations(self, indices: np.ndarray) -> torch.Tensor:
        if hasattr(self.dataset, "observations"):
            return self.dataset.observations(indices)
        return self.dataset.sample_observations_from_factors(
            self.factors[indices], self.random_state
        )

    def posteriors(self, indices: np.ndarray) -> Iterator[tuple[np.ndarray, dict]]:
        """The items of ``indices`` in batches, with their posteriors."""
        for start in range(0, len(indices), self.batch_size):
            chunk = indices[start : start + self.batch_size]
            with torch.no_grad():
                sites = as_site_mapping(self.posterior(self.observations(chunk)))
            if self.layout is None:
                self.layout = SiteLayout(sites)
            self.layout.check(sites, len(chunk))
            yield chunk, sites


def _factor_information(
    posterior: Posterior,
    dataset,
    exclude_factors,
    num_samples,
    batch_size,
    random_state,
    pairwise_memory_mb,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """
    (num_variables, kept factors) normalised mutual informations clamped at 0, and the
    variance over the data set of every variable's posterior location (None if unknown).
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    num_samples = check_positive_int(num_samples, "num_samples")
    random_state = as_random_state(random_state)
    factors = _all_factors(dataset)
    names = _factor_names(dataset, factors.shape[1])
    kept = _kept_factors(names, factors, exclude_factors)
    if not kept or len(factors) < 2:
        raise ValueError(
            f"expected at least 2 items and one kept factor but got {len(factors)} items and "
            f"factors {names} with exclude_factors={exclude_factors!r}"
        )
    grid = _Grid(dataset, posterior, factors, batch_size, random_state)
    num_items = len(factors)
    everything = np.arange(num_items)

    # One sample per item, and the first two moments of the posterior locations (shifted by
    # the first batch's mean, against cancellation).
    values, location_sum, location_square_sum, shift = [], 0.0, 0.0, None
    has_locations = True
    with forked_rng(seed=torch_seed(random_state)):
        for _, sites in grid.posteriors(everything):
            values.append(sample_sites(sites))
            locations = grid.layout.locations(sites) if has_locations else None
            if locations is None:
                has_locations = False
                continue
            locations = locations.to(torch.float64)
            shift = locations.mean(0) if shift is None else shift
            location_sum = location_sum + (locations - shift).sum(0)
            location_square_sum = location_square_sum + (locations - shift).square().sum(0)
    layout = grid.layout
    values = {name: torch.cat([value[name] for value in values]) for name in layout.sites}
    location_variance = None
    if has_locations and num_items > 1:
        element_variance = (location_square_sum - location_sum.square() / num_items) / (
            num_items - 1
        )
        element_variance = element_variance.clamp(min=0)
        owner = layout.variable_of_element().to(element_variance.device)
        location_variance = torch.zeros(
            sum(layout.num_variables.values()), dtype=torch.float64, device=element_variance.device
        )
        location_variance.index_add_(0, owner, element_variance)

    def entropy(indices: np.ndarray) -> torch.Tensor:
        """Per-variable entropy of the posterior mixture over ``indices``, at their samples."""
        scored = indices[choose_samples(len(indices), num_samples, random_state)]
        scored = torch.from_numpy(scored)
        points = {name: value[scored.to(value.device)] for name, value in values.items()}
        components = (
            (sites, {name: value[torch.from_numpy(chunk).to(value.device)] for name, value in values.items()})
            for chunk, sites in grid.posteriors(indices)
        )
        log_sum, count = layout.log_marginals(points, components, None, pairwise_memory_mb)
        log_sum = torch.cat([log_sum.variables[name] for name in layout.sites], dim=1)
        return -(log_sum - math.log(count)).mean(0)

    marginal = entropy(everything)
    columns = []
    factor_entropies = []
    for k in kept:
        classes, counts = np.unique(factors[:, k], return_counts=True)
        weights = counts / num_items
        conditional = sum(
            float(weight) * entropy(np.flatnonzero(factors[:, k] == value))
            for value, weight in zip(classes, weights)
        )
        columns.append(marginal - conditional)
        factor_entropies.append(-float(np.sum(weights * np.log(weights))))
    information = torch.stack(columns, dim=1)
    normalized = information / torch.tensor(
        factor_entropies, dtype=torch.float64, device=information.device
    )
    return normalized.clamp(min=0), location_variance


def mig_posterior(
    posterior: Posterior,
    dataset,
    exclude_factors: Sequence[str] | None = None,
    num_samples: int = 10000,
    batch_size: int = 1024,
    random_state: RandomStateLike = 0,
    pairwise_memory_mb: float = 1024.0,
) -> float:
    r"""
    Mutual Information Gap of the posterior over a whole data set (beta-TCVAE's estimator).

    With the aggregate posterior :math:`q(z_j) = \frac1N \sum_m q(z_j | x_m)` over all
    :math:`N` items and :math:`q(z_j | v_k = u)` the mixture over the items with
    :math:`v_k = u`, entropies are estimated at posterior samples of those items,
    :math:`I(z_j; v_k) = H(z_j) - \sum_u p(v_k = u) H(z_j | v_k = u)`, and

    .. math::

        \mathrm{MIG} = \frac{1}{K} \sum_k
            \Big( \tilde I_{j^{(1)}_k k} - \tilde I_{j^{(2)}_k k} \Big),
        \qquad \tilde I_{jk} = \max\Big(0, \frac{I(z_j; v_k)}{H(v_k)}\Big),

    with :math:`H(v_k) = \log |v_k|` on a full grid and :math:`j^{(1)}_k, j^{(2)}_k` the
    best two codes for factor :math:`k`. Costs one posterior pass over the data set per
    kept factor plus two.

    :param callable posterior: ``x_batch -> {site: Distribution}`` (or one Distribution), each
        with ``batch_shape == (len(x_batch),)``; each variable of every site is a code
        (see :func:`~pyro_hfvae.metrics.mutual_information`).
    :param dataset: a ground-truth data set holding every item of the factor grid (see the
        module docstring), e.g. dSprites from :mod:`pyro_hfvae.datasets`.
    :param exclude_factors: factor names to leave out. Default: ``("shape",)`` on dSprites
        (factor sizes 3, 6, 40, 32, 32, as beta-TCVAE and pro-VLAE report it), plus any
        factor with a single value; pass ``()`` to keep every factor.
    :type exclude_factors: Sequence[str] or None
    :param int num_samples: samples per entropy estimate (beta-TCVAE: 10,000), a random
        subset of the items concerned; the mixture always covers all of them.
    :param int batch_size: items per posterior call (and mixture components per chunk).
    :param random_state: seed or :class:`numpy.random.RandomState` for samples and subsets.
    :type random_state: int or numpy.random.RandomState
    :param float pairwise_memory_mb: bound on the pairwise log densities held at once.
    :returns: MIG in [0, 1].
    :rtype: float

    Example::

        >>> import numpy as np, pyro.distributions as dist, torch
        >>> class Grid:   # 3 x 4 items whose observations are their factor classes
        ...     factor_names = ("a", "b")
        ...     def __len__(self):
        ...         return 12
        ...     def factors_of(self, indices):
        ...         return np.stack(np.unravel_index(indices, (3, 4)), axis=-1)
        ...     def observations(self, indices):
        ...         return torch.as_tensor(self.factors_of(indices), dtype=torch.float32)
        >>> posterior = lambda x: dist.Normal(10 * x, 0.1).to_event(1)   # a code per factor
        >>> round(mig_posterior(posterior, Grid()), 4)
        1.0

    References

    [1] Isolating Sources of Disentanglement in Variational Autoencoders,
        Ricky T. Q. Chen, Xuechen Li, Roger Grosse, David Duvenaud (NeurIPS 2018)
    """
    pairwise_memory_mb = check_memory_budget(pairwise_memory_mb)
    normalized, _ = _factor_information(
        posterior, dataset, exclude_factors, num_samples, batch_size, random_state, pairwise_memory_mb
    )
    if normalized.shape[0] < 2:
        raise ValueError(
            "expected at least 2 latent variables (MIG compares the best two) but got "
            f"{normalized.shape[0]}"
        )
    top_two = torch.topk(normalized, 2, dim=0).values
    return float((top_two[0] - top_two[1]).mean())


def mig_sup_posterior(
    posterior: Posterior,
    dataset,
    exclude_factors: Sequence[str] | None = None,
    num_samples: int = 10000,
    batch_size: int = 1024,
    random_state: RandomStateLike = 0,
    pairwise_memory_mb: float = 1024.0,
    active_variance: float = 0.01,
) -> float:
    r"""
    MIG-sup of the posterior over a whole data set (pro-VLAE's estimator).

    With the normalised mutual informations :math:`\tilde I_{jk}` of :func:`mig_posterior`,

    .. math::

        \mathrm{MIG\text{-}sup} = \frac{1}{|A|} \sum_{j \in A}
            \Big( \tilde I_{j k^{(1)}_j} - \tilde I_{j k^{(2)}_j} \Big),

    over the active variables :math:`A`: those whose posterior location (mean; class
    probabilities for a Concrete) varies over the data set with variance above
    ``active_variance`` (summed over a multivariate variable's elements). Variables whose
    distribution has neither a mean nor class probabilities count as active. Returns 0.0
    (and logs a warning) when none is active.

    :param callable posterior: ``x_batch -> {site: Distribution}`` (or one Distribution), each
        with ``batch_shape == (len(x_batch),)``; each variable of every site is a code
        (see :func:`~pyro_hfvae.metrics.mutual_information`).
    :param dataset: a ground-truth data set holding every item of the factor grid (see the
        module docstring), e.g. dSprites from :mod:`pyro_hfvae.datasets`.
    :param exclude_factors: factor names to leave out. Default: ``("shape",)`` on dSprites
        (factor sizes 3, 6, 40, 32, 32, as beta-TCVAE and pro-VLAE report it), plus any
        factor with a single value; pass ``()`` to keep every factor.
    :type exclude_factors: Sequence[str] or None
    :param int num_samples: samples per entropy estimate (beta-TCVAE: 10,000), a random
        subset of the items concerned; the mixture always covers all of them.
    :param int batch_size: items per posterior call (and mixture components per chunk).
    :param random_state: seed or :class:`numpy.random.RandomState` for samples and subsets.
    :type random_state: int or numpy.random.RandomState
    :param float pairwise_memory_mb: bound on the pairwise log densities held at once.
    :param float active_variance: activity threshold (pro-VLAE: 0.01).
    :returns: MIG-sup in [0, 1].
    :rtype: float

    Example::

        >>> import numpy as np, pyro.distributions as dist, torch
        >>> class Grid:   # 3 x 4 items whose observations are their factor classes
        ...     factor_names = ("a", "b")
        ...     def __len__(self):
        ...         return 12
        ...     def factors_of(self, indices):
        ...         return np.stack(np.unravel_index(indices, (3, 4)), axis=-1)
        ...     def observations(self, indices):
        ...         return torch.as_tensor(self.factors_of(indices), dtype=torch.float32)
        >>> both = lambda x: dist.Normal(10 * x @ torch.tensor([[1.0], [4.0]]), 0.1).to_event(1)
        >>> round(mig_sup_posterior(lambda x: dist.Normal(10 * x, 0.1).to_event(1), Grid()), 4)
        1.0
        >>> round(mig_sup_posterior(both, Grid()), 4)   # one code, both factors: no gap
        0.0

    References

    [1] Progressive Learning and Disentanglement of Hierarchical Representations,
        Zhiyuan Li, Jaideep Vitthal Murkute, Prashnna Kumar Gyawali, Linwei Wang (ICLR 2020)
    """
    pairwise_memory_mb = check_memory_budget(pairwise_memory_mb)
    normalized, location_variance = _factor_information(
        posterior, dataset, exclude_factors, num_samples, batch_size, random_state, pairwise_memory_mb
    )
    if normalized.shape[1] < 2:
        raise ValueError(
            f"expected at least 2 kept factors (MIG-sup compares the best two) but got "
            f"{normalized.shape[1]}; exclude fewer factors"
        )
    top_two = torch.topk(normalized, 2, dim=1).values
    gaps = top_two[:, 0] - top_two[:, 1]
    if location_variance is not None:
        active = location_variance.to(gaps.device) > active_variance
        if not bool(active.any()):
            logger.warning(
                "mig_sup_posterior: no variable has location variance above %g; returning 0.0",
                active_variance,
            )
            return 0.0
        gaps = gaps[active]
    return float(gaps.mean())
