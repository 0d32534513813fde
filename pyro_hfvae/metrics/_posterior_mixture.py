# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The whole-data-set aggregate posterior for the information metrics (private): posteriors and
samples of data batches, and the exact mixture :math:`\\frac{1}{N} \\sum_m q(\\cdot | x_m)`
streamed over those batches through the engine of :mod:`pyro_hfvae.ops.mixture`.
"""

import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from torch.distributions import Distribution, Independent

from pyro_hfvae.distributions.util import log_space_concrete, soft_value, variable_log_prob, variable_ndim
from pyro_hfvae.ops import LogMarginals, mixture_log_marginals, pairwise_log_prob
from pyro_hfvae.poutine.groups import GroupNode
from pyro_hfvae.poutine.plate_layout import PlateLayout

PosteriorOutput = Mapping[str, Distribution] | Distribution
Posterior = Callable[[torch.Tensor], PosteriorOutput]

#: Site name used when a posterior returns a single distribution.
SINGLE_SITE = "z"


def as_site_mapping(output: PosteriorOutput) -> dict[str, Distribution]:
    """A posterior's sites by name, each Concrete in log space (:func:`log_space_concrete`)."""
    if isinstance(output, Distribution):
        return {SINGLE_SITE: log_space_concrete(output)}
    if isinstance(output, Mapping) and output and all(isinstance(fn, Distribution) for fn in output.values()):
        return {name: log_space_concrete(fn) for name, fn in output.items()}
    raise TypeError(
        "expected the posterior to return a torch Distribution or a non-empty mapping site name "
        f"-> Distribution but got {type(output).__name__}; return e.g. "
        "{'z': Normal(loc, scale).to_event(1)}"
    )


class SiteLayout:
    """
    The sites of a posterior and their variables.

    A site whose distribution is ``Independent`` over scalar events has one variable per
    event element; an intrinsically multivariate event (Concrete, Dirichlet,
    MultivariateNormal) is one variable (:func:`~pyro_hfvae.distributions.util.variable_ndim`).
    """

    def __init__(self, sites: Mapping[str, Distribution]) -> None:
        self.sites = list(sites)
        self.var_ndim = {name: variable_ndim(fn) for name, fn in sites.items()}
        self.event_shape = {name: fn.event_shape for name, fn in sites.items()}
        self.var_shape = {name: fn.event_shape[: self.var_ndim[name]] for name, fn in sites.items()}
        self.num_variables = {name: math.prod(shape) for name, shape in self.var_shape.items()}
        self.num_elements = {name: math.prod(shape) for name, shape in self.event_shape.items()}

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
        """Index of the variable (along the sites' variables, in order) each flattened event element belongs to."""
        index, start = [], 0
        for name in self.sites:
            per_var = math.prod(self.event_shape[name][self.var_ndim[name] :])
            index.append(torch.arange(self.num_variables[name]).repeat_interleave(per_var) + start)
            start += self.num_variables[name]
        return torch.cat(index)

    def log_marginals(
        self,
        points: Mapping[str, torch.Tensor],
        components: Iterable[tuple[Mapping[str, Distribution], Mapping[str, torch.Tensor]]],
        tree: GroupNode | None,
        pairwise_memory_mb: float,
        *,
        sites: bool = False,
    ) -> tuple[LogMarginals, int]:
        """
        :math:`\\log \\sum_m q(t(z_s) | x_m)` for every variable (site, node) ``t`` at every
        sample point, over all components (float64, not yet divided by their number).

        :param points: site -> (S, *event_shape) sample points.
        :param components: batches of (site -> distribution with batch_shape (M_c,), site ->
            the components' own samples, inside their supports).
        :returns: the log sums and the number of components.
        """
        num_points = next(iter(points.values())).shape[0]
        plate = PlateLayout("data", -1, num_points, None, None, 1)
        total, count = None, 0
        for fns, anchors in components:
            num_components = next(iter(fns.values())).batch_shape[0]

            def table(rows: slice, name: str, fns=fns, anchors=anchors, num_components=num_components):
                def score(fn, value):
                    return variable_log_prob(fn, value, self.var_ndim[name])

                return pairwise_log_prob(score, fns[name], points[name], plate, rows, num_components=num_components,
                                         anchor=anchors[name])

            with torch.no_grad():
                block = mixture_log_marginals(
                    {name: lambda rows, name=name: table(rows, name) for name in self.sites},
                    (1, num_points, num_components), self.num_variables, tree, sites=sites,
                    num_elements=self.num_elements, dtype=points[self.sites[0]].dtype,
                    pairwise_memory_mb=pairwise_memory_mb,
                ).map(lambda t: t[0].to(torch.float64))
            total = block if total is None else total.map(torch.logaddexp, block)
            count += num_components
        if total is None:
            raise ValueError("expected at least one batch of data but got none")
        return total, count

    def own_log_marginals(
        self, fns: Mapping[str, Distribution], values: Mapping[str, torch.Tensor], tree: GroupNode | None
    ) -> LogMarginals:
        """:math:`\\log q(t(z_s) | x_s)` for every target ``t`` at each point's own sample (float64)."""
        own = {}
        for name in self.sites:
            log_prob = variable_log_prob(fns[name], values[name], self.var_ndim[name])
            own[name] = log_prob.reshape(1, -1, 1, self.num_variables[name])
        with torch.no_grad():
            out = mixture_log_marginals(
                {name: lambda rows, name=name: own[name][:, rows] for name in self.sites},
                (1, own[self.sites[0]].shape[1], 1), self.num_variables, tree, sites=True,
            )
        return out.map(lambda t: t[0].to(torch.float64))


def sample_sites(sites: Mapping[str, Distribution]) -> dict[str, torch.Tensor]:
    """One sample per data point of every site (straight-through Concrete: the soft value)."""
    with torch.no_grad():
        return {name: soft_value(fn.sample()) for name, fn in sites.items()}


def choose_samples(num_data: int, num_samples: int | None, random_state: np.random.RandomState) -> np.ndarray:
    """Sorted indices of the scored data points (all if ``num_samples`` is None or >= N)."""
    if num_samples is None or num_samples >= num_data:
        return np.arange(num_data)
    return np.sort(random_state.choice(num_data, size=num_samples, replace=False))
