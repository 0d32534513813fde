# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Exact aggregate-posterior densities over a whole data set, in bounded memory (private).

The aggregate posterior is the mixture :math:`q(z) = \\frac{1}{N} \\sum_m q(z | x_m)`. Its
log density at S sample points is a running logsumexp over chunks of samples x chunks of
mixture components, so no more than ``max_memory_mb`` of pairwise log densities exist at once.
"""

import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from torch.distributions import Distribution, Independent

from pyro_hfvae.distributions.util import soft_value, variable_log_prob, variable_ndim

PosteriorOutput = Mapping[str, Distribution] | Distribution
Posterior = Callable[[torch.Tensor], PosteriorOutput]

# Bytes per (sample, component) pair, in units of the log-density dtype's size: log_prob's
# elementwise temporaries (a few per event element) plus the reduced targets and their exp.
_TEMPORARIES_PER_EVENT_ELEMENT = 6
_TEMPORARIES_PER_TARGET = 3

#: Site name used when a posterior returns a single distribution.
SINGLE_SITE = "z"


def as_site_mapping(output: PosteriorOutput) -> dict[str, Distribution]:
    if isinstance(output, Distribution):
        return {SINGLE_SITE: output}
    if (
        isinstance(output, Mapping)
        and output
        and all(isinstance(fn, Distribution) for fn in output.values())
    ):
        return dict(output)
    raise TypeError(
        "expected the posterior to return a torch Distribution or a non-empty mapping site name "
        f"-> Distribution but got {type(output).__name__}; return e.g. "
        "{'z': Normal(loc, scale).to_event(1)}"
    )


class SiteLayout:
    """
    How the sites' variables are laid out along one flat variable axis.

    A site whose distribution is ``Independent`` over scalar events has one variable per
    event element; an intrinsically multivariate event (Concrete, Dirichlet,
    MultivariateNormal) is one variable (:func:`~pyro_hfvae.distributions.util.variable_ndim`).
    """

    def __init__(self, sites: Mapping[str, Distribution]) -> None:
        self.sites = list(sites)
        self.var_ndim = {name: variable_ndim(fn) for name, fn in sites.items()}
        self.event_shape = {name: fn.event_shape for name, fn in sites.items()}
        self.var_shape = {name: fn.event_shape[: self.var_ndim[name]] for name, fn in sites.items()}
        self.slices = {}
        start = 0
        for name in self.sites:
            size = math.prod(self.var_shape[name])
            self.slices[name] = slice(start, start + size)
            start += size
        self.num_variables = start
        self.num_event_elements = sum(math.prod(shape) for shape in self.event_shape.values())

    def check(self, sites: Mapping[str, Distribution], num_data: int) -> None:
        if list(sites) != self.sites:
            raise ValueError(
                f"expected the posterior to return the same sites for every batch ({self.sites}) "
                f"but got {list(sites)}"
            )
        for name, fn in sites.items():
            if tuple(fn.batch_shape) != (num_data,):
                raise ValueError(
                    f"expected site {name!r} to have batch_shape ({num_data},) (one distribution "
                    f"per data point) but got batch_shape {tuple(fn.batch_shape)} with "
                    f"event_shape {tuple(fn.event_shape)}; move per-point dims into the event "
                    "with .to_event()"
                )
            if fn.event_shape != self.event_shape[name]:
                raise ValueError(
                    f"expected site {name!r} to keep event_shape {tuple(self.event_shape[name])} "
                    f"across batches but got {tuple(fn.event_shape)}"
                )

    def log_prob(
        self, sites: Mapping[str, Distribution], values: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """Per-variable log densities, (*broadcast batch, num_variables)."""
        parts = []
        for name in self.sites:
            log_prob = variable_log_prob(sites[name], values[name], self.var_ndim[name])
            batch_ndim = log_prob.dim() - len(self.var_shape[name])
            parts.append(log_prob.reshape(log_prob.shape[:batch_ndim] + (-1,)))
        return torch.cat(parts, dim=-1)

    def locations(self, sites: Mapping[str, Distribution]) -> torch.Tensor | None:
        """
        (n, num_event_elements) posterior locations (means; class probabilities where the
        mean is undefined, as for Concrete) flattened per site, or None if some site has neither.
        """
        parts = []
        for name in self.sites:
            fn = sites[name]
            try:
                location = fn.mean
            except NotImplementedError:
                base = fn
                while isinstance(base, Independent):
                    base = base.base_dist
                if not hasattr(base, "probs"):
                    return None
                location = base.probs.expand(fn.batch_shape + fn.event_shape)
            parts.append(location.reshape(location.shape[0], -1))
        return torch.cat(parts, dim=-1)

    def variable_of_element(self) -> torch.Tensor:
        """Index of the variable each flattened event element belongs to."""
        index = []
        for name in self.sites:
            num_vars = math.prod(self.var_shape[name])
            per_var = math.prod(self.event_shape[name][self.var_ndim[name] :])
            index.append(
                torch.arange(num_vars).repeat_interleave(per_var) + self.slices[name].start
            )
        return torch.cat(index)


def sample_sites(sites: Mapping[str, Distribution]) -> dict[str, torch.Tensor]:
    """One sample per data point of every site (straight-through Concrete: the soft value)."""
    with torch.no_grad():
        return {name: soft_value(fn.sample()) for name, fn in sites.items()}


def sample_chunk_size(
    layout: SiteLayout,
    num_components: int,
    num_targets: int,
    dtype: torch.dtype,
    max_memory_mb: float,
) -> int:
    """Most samples whose pairwise table against ``num_components`` components fits the bound."""
    itemsize = torch.finfo(dtype).bits // 8
    per_pair = itemsize * (
        _TEMPORARIES_PER_EVENT_ELEMENT * layout.num_event_elements
        + _TEMPORARIES_PER_TARGET * num_targets
    )
    budget = max_memory_mb * 2**20
    chunk = int(budget // (per_pair * num_components))
    if chunk < 1:
        raise ValueError(
            "expected a component batch whose pairwise log densities fit "
            f"max_memory_mb={max_memory_mb} but a batch of {num_components} data points needs "
            f"{per_pair * num_components / 2**20:.3g} MB per sample; pass smaller data batches "
            "or raise max_memory_mb"
        )
    return chunk


def mixture_log_density(
    layout: SiteLayout,
    values: Mapping[str, torch.Tensor],
    components: Iterable[Mapping[str, Distribution]],
    reduce: Callable[[torch.Tensor], torch.Tensor],
    num_targets: int,
    max_memory_mb: float,
) -> tuple[torch.Tensor, int]:
    """
    :math:`\\log \\sum_m q(t(z_s) | x_m)` for every sample :math:`s` and target :math:`t`.

    :param values: site -> (S, *event_shape) sample points.
    :param components: batches of posteriors, site -> distribution with batch_shape (M_c,).
    :param reduce: maps per-variable log densities (..., num_variables) to (..., num_targets)
        (a target is a variable or a sum of variables, e.g. a site or a group).
    :returns: (S, num_targets) float64 log sums (not yet divided by the number of
        components) and the number of components.
    """
    num_samples = next(iter(values.values())).shape[0]
    total = None
    num_components = 0
    for sites in components:
        batch = next(iter(sites.values())).batch_shape[0]
        chunk = sample_chunk_size(
            layout, batch, num_targets, values[layout.sites[0]].dtype, max_memory_mb
        )
        for start in range(0, num_samples, chunk):
            points = {
                name: value[start : start + chunk].unsqueeze(1) for name, value in values.items()
            }
            with torch.no_grad():
                log_sum = reduce(layout.log_prob(sites, points)).logsumexp(dim=1).to(torch.float64)
            if total is None:
                total = torch.full(
                    (num_samples, num_targets),
                    -math.inf,
                    dtype=torch.float64,
                    device=log_sum.device,
                )
            total[start : start + chunk] = torch.logaddexp(total[start : start + chunk], log_sum)
        num_components += batch
    if total is None:
        raise ValueError("expected at least one batch of data but got none")
    return total, num_components


def choose_samples(
    num_data: int, num_samples: int | None, random_state: np.random.RandomState
) -> np.ndarray:
    """Sorted indices of the scored data points (all if ``num_samples`` is None or >= N)."""
    if num_samples is None or num_samples >= num_data:
        return np.arange(num_data)
    return np.sort(random_state.choice(num_data, size=num_samples, replace=False))
