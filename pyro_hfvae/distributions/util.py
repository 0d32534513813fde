# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Per-variable log densities of a sample site's distribution, and what else the objectives
and the readers of a latent space need to know about a site: which sites are latent, a
distribution's mask and its mean.

The HFVAE decomposition and the information metrics score *variables*, not sites.
A site whose distribution is :class:`~torch.distributions.Independent` over a base with
scalar events (``Normal(loc, scale).to_event(1)``) has one variable per event element;
a site with an intrinsically multivariate event (Concrete, Dirichlet, MultivariateNormal,
OneHotCategorical) is a single variable. :func:`variable_log_prob` is the one log-density
dispatcher of the package: both objectives score every site with it.
"""

import logging
import math

import torch
from pyro.distributions.torch_distribution import MaskedDistribution
from pyro.distributions.util import sum_rightmost
from pyro.poutine import Trace
from pyro.poutine.util import site_is_subsample
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    RelaxedOneHotCategorical,
)
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

logger = logging.getLogger(__name__)

__all__ = [
    "CONCRETE_SCORINGS",
    "concrete_log_prob",
    "concrete_log_value",
    "distribution_mask",
    "distribution_mean",
    "is_batch_invariant",
    "latent_sites",
    "log_space_concrete",
    "soft_value",
    "variable_log_prob",
    "variable_ndim",
]

#: How :func:`variable_log_prob` can score a Concrete (RelaxedOneHotCategorical) site.
CONCRETE_SCORINGS = ("relaxed", "argmax")

_WRAPPERS = ("MaskedDistribution", "ExpandedDistribution")


def _unwrap(fn: Distribution, *, independent: bool = False) -> Distribution:
    """
    Strips Pyro's wrappers that do not change the density of an unmasked value
    (``MaskedDistribution``, ``ExpandedDistribution``; with ``independent=True`` also
    ``Independent``, to reach the distribution that holds the parameters).
    """
    while type(fn).__name__ in _WRAPPERS or (independent and isinstance(fn, Independent)):
        fn = fn.base_dist
    return fn


def latent_sites(trace: Trace) -> list[tuple[str, dict]]:
    """
    The latent sample sites of a trace, in execution order: neither observed, nor a
    plate's subsample site, nor an auxiliary guide site (``infer={"is_auxiliary": True}``,
    which has no counterpart in the model).

    :param ~pyro.poutine.Trace trace: a guide or model trace.
    :returns: ``(name, site)`` pairs.
    :rtype: list

    Example::

        >>> import pyro, pyro.distributions as dist
        >>> def guide():
        ...     pyro.sample("aux", dist.Normal(0., 1.), infer={"is_auxiliary": True})
        ...     with pyro.plate("data", 10, subsample_size=2):
        ...         pyro.sample("z", dist.Normal(0., 1.))
        ...         pyro.sample("x", dist.Normal(0., 1.), obs=torch.zeros(2))
        >>> [name for name, _ in latent_sites(pyro.poutine.trace(guide).get_trace())]
        ['z']
    """
    return [
        (name, site)
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site_is_subsample(site)
        and not (site.get("infer") or {}).get("is_auxiliary")
    ]


def distribution_mask(fn: Distribution) -> torch.Tensor | None:
    """
    The combined mask of Pyro's ``MaskedDistribution`` wrappers of ``fn``
    (``fn.mask(m)``, at any depth of ``Independent``/``Expanded`` wrappers), as a boolean
    tensor that broadcasts against ``fn.batch_shape + fn.event_shape[:variable_ndim(fn)]``,
    or ``None`` where nothing is masked out.

    :param ~torch.distributions.Distribution fn: a site's distribution.
    :rtype: torch.Tensor or None

    Example::

        >>> import pyro.distributions as dist
        >>> fn = dist.Normal(torch.zeros(2, 3), 1.).mask(torch.tensor([True, False, True])).to_event(1)
        >>> distribution_mask(fn)
        tensor([[ True, False,  True],
                [ True, False,  True]])
        >>> distribution_mask(dist.Normal(torch.zeros(2, 3), 1.).to_event(1).mask(torch.tensor([True, False])))
        tensor([[ True],
                [False]])
    """
    num_variable_dims = variable_ndim(fn)
    mask = None
    depth = 0  # event dims of ``fn`` that are batch dims at this level of wrapping
    while True:
        if type(fn).__name__ == "MaskedDistribution":
            level_mask = fn._mask
            if level_mask is not True:
                level_mask = torch.as_tensor(level_mask, dtype=torch.bool)
                level_mask = level_mask.reshape(level_mask.shape + (1,) * (num_variable_dims - depth))
                mask = level_mask if mask is None else mask & level_mask
        elif isinstance(fn, Independent):
            depth += fn.reinterpreted_batch_ndims
        elif type(fn).__name__ not in _WRAPPERS:
            return mask
        fn = fn.base_dist


def distribution_mean(fn: Distribution) -> torch.Tensor:
    """
    The mean of a latent site's distribution, with shape ``batch_shape + event_shape``; for
    relaxed (Concrete) distributions, whose mean torch does not define, the class
    probabilities (the mean of the categorical they relax).

    :param ~torch.distributions.Distribution fn: the distribution.
    :rtype: torch.Tensor

    Example::

        >>> import pyro.distributions as dist
        >>> distribution_mean(dist.RelaxedOneHotCategorical(torch.tensor(0.5), probs=torch.tensor([0.2, 0.8])))
        tensor([0.2000, 0.8000])
    """
    shape = fn.batch_shape + fn.event_shape
    try:
        return fn.mean.expand(shape)
    except NotImplementedError:  # relaxed distributions: RelaxedOneHotCategorical, RelaxedBernoulli
        probs = getattr(_unwrap(fn, independent=True), "probs", None)
        if isinstance(probs, torch.Tensor):
            return probs.expand(shape)
    raise ValueError(
        f"expected a latent distribution with a mean but {type(fn).__name__} defines none; "
        "use a distribution with a mean (Normal, Concrete, ...) or summarise it by samples"
    )


def is_batch_invariant(fn: Distribution, dim: int) -> bool:
    """
    Whether the parameters of ``fn`` provably do not vary along the batch dim ``dim``
    (size 1 or stride 0), so that its marginals are the same for every data point.

    :param ~torch.distributions.Distribution fn: a site's distribution.
    :param int dim: a negative batch dim (e.g. the data plate's).
    :rtype: bool

    Example::

        >>> import pyro.distributions as dist
        >>> is_batch_invariant(dist.Normal(torch.zeros(3), 1.).expand([4, 3]), -2)
        True
        >>> is_batch_invariant(dist.Normal(torch.randn(4, 3), 1.), -2)
        False
    """
    fn = _unwrap(fn)
    batch_ndim = len(fn.batch_shape)
    if batch_ndim < -dim or fn.batch_shape[dim] == 1:
        return True
    base = getattr(fn, "base_dist", None)
    if base is not None:  # Independent, TransformedDistribution: the base holds the parameters.
        return is_batch_invariant(base, dim - getattr(fn, "reinterpreted_batch_ndims", 0))
    params = [fn.__dict__[name] for name in fn.arg_constraints if isinstance(fn.__dict__.get(name), torch.Tensor)]
    # Some distributions keep their parameters in an inner one (ExpRelaxedCategorical._categorical).
    inner = [v for v in fn.__dict__.values() if isinstance(v, Distribution)]
    if not params and not inner:
        return False
    axis = batch_ndim + dim  # parameters are batch_shape + parameter-event shape
    for param in params:
        if param.dim() > axis and param.size(axis) > 1 and param.stride(axis) != 0:
            return False
    return all(is_batch_invariant(d, dim) for d in inner)


def variable_ndim(fn: Distribution) -> int:
    """
    Number of leading event dimensions of ``fn`` that index separate variables.

    ``Independent`` over a scalar-event base makes every event element a variable;
    a multivariate base (MultivariateNormal, Concrete, Dirichlet, ...) is one variable
    per base event.

    :param ~torch.distributions.Distribution fn: a site's distribution.
    :returns: how many of the leading event dims are variable dims.
    :rtype: int

    Example::

        >>> import pyro.distributions as dist, torch
        >>> variable_ndim(dist.Normal(torch.zeros(3), 1.).to_event(1))
        1
        >>> variable_ndim(dist.Dirichlet(torch.ones(3)))
        0
    """
    fn = _unwrap(fn)
    if isinstance(fn, Independent):
        return fn.reinterpreted_batch_ndims + variable_ndim(fn.base_dist)
    return 0


def soft_value(value: torch.Tensor) -> torch.Tensor:
    """
    The relaxed value of a straight-through Concrete sample, else ``value`` itself.

    :class:`~pyro.distributions.RelaxedOneHotCategoricalStraightThrough` returns a
    one-hot value that keeps its soft sample in ``value._unquantize``; reshaping
    the value drops that attribute, so read it first.

    :param torch.Tensor value: a sample site's value.
    :rtype: torch.Tensor
    """
    return getattr(value, "_unquantize", value)


def concrete_log_prob(fn: RelaxedOneHotCategorical, value: torch.Tensor) -> torch.Tensor:
    r"""
    Relaxed (Concrete) log density that stays finite where components of ``value``
    underflowed to zero.

    At low temperature or with many classes the smallest components of a Concrete
    sample underflow to exactly 0 and the textbook density :math:`\log p(x)` is
    ``-inf``/NaN. The density is evaluated in log space,
    :math:`\log p(x) = \log p_{\mathrm{ExpConcrete}}(y) - \sum_k y_k`, :math:`y = \log x`
    (:func:`concrete_log_value`: the sample's exact logarithm where it was kept, else ``log x``
    with ``x`` clamped below at the square root of the smallest normal number of its dtype,
    about ``1e-19`` in float32, which also keeps the gradient of ``log x`` from overflowing).
    Where no component is below that floor this equals ``fn.log_prob(value)``.

    :param ~torch.distributions.RelaxedOneHotCategorical fn: a Concrete distribution.
    :param torch.Tensor value: a point of the simplex.
    :rtype: torch.Tensor

    References

    [1] The Concrete Distribution: A Continuous Relaxation of Discrete Random Variables,
        Chris J. Maddison, Andriy Mnih, Yee Whye Teh (2017)
    """
    log_value = concrete_log_value(value)
    base = fn.base_dist
    if not isinstance(base, ExpRelaxedCategorical):
        raise TypeError(
            f"expected a RelaxedOneHotCategorical over ExpRelaxedCategorical but got base {type(base).__name__}"
        )
    # ExpRelaxedCategorical.log_prob without support validation (log_value is always valid).
    num_classes = base.logits.shape[-1]
    temperature = base.temperature
    log_scale = torch.full_like(temperature, float(num_classes)).lgamma() + (num_classes - 1) * temperature.log()
    score = base.logits - log_value * temperature
    score = (score - score.logsumexp(dim=-1, keepdim=True)).sum(-1)
    return score + log_scale - log_value.sum(-1)


def log_space_concrete(fn: Distribution) -> Distribution:
    r"""
    ``fn`` with a Concrete (``RelaxedOneHotCategorical``, also inside ``Independent``,
    ``Expanded`` and ``Masked`` wrappers, which are kept) replaced by the distribution of its
    logarithm, the ExpConcrete (torch's ``ExpRelaxedCategorical``); any other distribution
    unchanged.

    Mutual information, total correlation and every term of the ELBO are invariant under the
    bijection :math:`x \mapsto \log x` of a variable whose prior and posteriors are all
    Concrete: its Jacobian multiplies the variable's density under each of them alike and
    cancels in every ratio, :math:`q(z | x) / p(z)` as
    :math:`q(z | x_s) / \frac{1}{N} \sum_m q(z | x_m)`. In log space neither sampling nor
    scoring underflows, whereas a confident Concrete's samples have components below the
    smallest float (:func:`concrete_log_prob` must clamp them): estimated on the simplex, the
    information of a Concrete whose logits differ by about 30 came out at -23 nats in float32
    (about 5.8 nats in log space and in float64; 1,000 data points, temperature 0.66). The
    objectives and the information metrics score Concrete sites in log space for this reason.

    :param ~torch.distributions.Distribution fn: a site's distribution.
    :rtype: ~torch.distributions.Distribution

    Example::

        >>> import pyro.distributions as dist, torch
        >>> fn = dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(4, 3))
        >>> type(log_space_concrete(fn)).__name__, log_space_concrete(fn).batch_shape
        ('ExpRelaxedCategorical', torch.Size([4]))
        >>> log_space_concrete(dist.Normal(0., 1.))
        Normal(loc: 0.0, scale: 1.0)

    References

    [1] The Concrete Distribution: A Continuous Relaxation of Discrete Random Variables,
        Chris J. Maddison, Andriy Mnih, Yee Whye Teh (2017)
    """
    if isinstance(fn, RelaxedOneHotCategorical):
        return fn.base_dist
    is_wrapper = type(fn).__name__ in _WRAPPERS or isinstance(fn, Independent)
    if not is_wrapper:
        return fn
    base = log_space_concrete(fn.base_dist)
    if base is fn.base_dist:
        return fn
    if isinstance(fn, Independent):
        return Independent(base, fn.reinterpreted_batch_ndims)
    if type(fn).__name__ == "MaskedDistribution":
        return MaskedDistribution(base, fn._mask)
    return base.expand(fn.batch_shape)


def concrete_log_value(value: torch.Tensor) -> torch.Tensor:
    r"""
    The logarithm of a Concrete sample: exact where the sample was drawn in log space
    (:class:`~pyro_hfvae.poutine.ConcreteLogValueMessenger`, which the objectives apply
    to the guide, keeps it on the sample), else ``log x`` with ``x`` clamped as
    :func:`concrete_log_prob` clamps it.

    :param torch.Tensor value: a point of the simplex (a Concrete site's value).
    :rtype: torch.Tensor

    Example::

        >>> value = torch.tensor([1.0, 0.0])
        >>> concrete_log_value(value)   # 0 underflowed: clamped at sqrt(tiny)
        tensor([  0.0000, -43.6683])
        >>> value._concrete_log_value = torch.tensor([0.0, -120.0])
        >>> concrete_log_value(value)
        tensor([   0., -120.])
    """
    log_value = getattr(value, "_concrete_log_value", None)
    if log_value is not None:
        return log_value
    return value.clamp(min=torch.finfo(value.dtype).tiny ** 0.5).log()


_HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def _joint_log_prob(fn: Distribution, value: torch.Tensor, concrete: str) -> torch.Tensor:
    fn = _unwrap(fn)
    if isinstance(fn, Independent) and (
        isinstance(_unwrap(fn, independent=True), (RelaxedOneHotCategorical, ExpRelaxedCategorical))
        or distribution_mask(fn) is not None
    ):
        # Sum the base's densities, so that a Concrete inside is scored in log space (and
        # ``masked=False`` reaches a masked base); else torch's own density, as Pyro's.
        return sum_rightmost(_joint_log_prob(fn.base_dist, value, concrete), fn.reinterpreted_batch_ndims)
    if concrete == "argmax" and isinstance(fn, (RelaxedOneHotCategorical, ExpRelaxedCategorical)):
        # The argmax of a Concrete sample and of its logarithm are the same class.
        return Categorical(logits=fn.logits, validate_args=False).log_prob(value.argmax(-1))
    if isinstance(fn, RelaxedOneHotCategorical):
        return concrete_log_prob(fn, value)
    if isinstance(fn, Normal) and type(fn).log_prob is Normal.log_prob:
        # Multiplications instead of torch's division and pow: about 20% faster on the
        # broadcast B x B x D pairwise tables, forward and backward.
        inv_scale = fn.scale.reciprocal()
        standardized = value * inv_scale - fn.loc * inv_scale
        return -0.5 * standardized.square() - (fn.scale.log() + _HALF_LOG_TWO_PI)
    return fn.log_prob(value)


def variable_log_prob(
    fn: Distribution,
    value: torch.Tensor,
    var_ndim: int | None = None,
    *,
    masked: bool = True,
    concrete: str = "relaxed",
) -> torch.Tensor:
    r"""
    Log density of every variable of a site, each under its marginal.

    The result has shape ``batch_shape + event_shape[:var_ndim]``: one entry per
    variable, each the log density of that variable's part of ``value`` under the
    marginal of ``fn``. For ``Independent`` this is the base ``log_prob`` (summed over
    any event dims inside a variable); a MultivariateNormal asked for per-element
    variables gives its Normal marginals :math:`\mathcal{N}(\mu_i, \Sigma_{ii})`
    (so a correlated prior can be scored against a factorised guide's variables).
    ``var_ndim=0`` gives the joint log density of the whole event, equal to
    ``fn.log_prob(value)`` where that is finite. Concrete sites use
    :func:`concrete_log_prob` (also inside ``Independent``, ``Expanded`` and ``Masked``
    wrappers); with ``concrete="argmax"`` a Concrete, or its logarithm's ExpConcrete, scores
    the class of the value's argmax. The masks of ``fn.mask(m)`` (:func:`distribution_mask`) set masked-out
    entries to 0, as Pyro does, unless ``masked=False``. ``value`` may broadcast against
    ``fn.batch_shape`` (the pairwise trick of the HFVAE estimator relies on it); a
    straight-through Concrete value is scored at its soft value (:func:`soft_value`).

    :param ~torch.distributions.Distribution fn: a site's distribution.
    :param torch.Tensor value: a value of that site (any broadcastable batch shape).
    :param int var_ndim: number of leading event dims that index variables; defaults to
        :func:`variable_ndim` of ``fn``.
    :param bool masked: apply the masks of ``fn`` (``False``: score every entry).
    :param str concrete: ``"relaxed"`` scores a Concrete by its relaxed density,
        ``"argmax"`` by the categorical log probability of the value's argmax (also an
        ExpConcrete, at a log value).
    :rtype: torch.Tensor

    Example::

        >>> import pyro.distributions as dist, torch
        >>> fn = dist.MultivariateNormal(torch.zeros(2), torch.tensor([[1., .5], [.5, 4.]]))
        >>> variable_log_prob(fn, torch.zeros(2), 1)   # Normal(0, 1) and Normal(0, 2) at 0
        tensor([-0.9189, -1.6121])
        >>> variable_log_prob(dist.Normal(torch.zeros(2), 1.).mask(torch.tensor([True, False])), torch.zeros(2))
        tensor([-0.9189,  0.0000])
    """
    if concrete not in CONCRETE_SCORINGS:
        raise ValueError(f"expected concrete in {CONCRETE_SCORINGS} but got {concrete!r}")
    value = soft_value(value)
    if var_ndim is None:
        var_ndim = variable_ndim(fn)
    mask = distribution_mask(fn) if masked else None
    if mask is None:
        return _variable_log_prob(fn, value, var_ndim, concrete)
    # Mask every variable before summing over variables (the mask may sit inside an Independent).
    num_variable_dims = variable_ndim(fn)
    ndim = max(var_ndim, num_variable_dims)
    log_prob = _variable_log_prob(fn, value, ndim, concrete)
    mask = mask.reshape(mask.shape + (1,) * (ndim - num_variable_dims)).to(log_prob.device)
    log_prob = torch.where(mask, log_prob, log_prob.new_zeros(()))
    return sum_rightmost(log_prob, ndim - var_ndim)


def _variable_log_prob(fn: Distribution, value: torch.Tensor, var_ndim: int, concrete: str) -> torch.Tensor:
    fn = _unwrap(fn)
    if var_ndim == 0:
        return _joint_log_prob(fn, value, concrete)
    if var_ndim > len(fn.event_shape):
        raise ValueError(
            f"expected at most {len(fn.event_shape)} variable dims for {type(fn).__name__} with event shape "
            f"{tuple(fn.event_shape)} but got var_ndim={var_ndim}"
        )
    if isinstance(fn, Independent):
        reinterpreted = fn.reinterpreted_batch_ndims
        if var_ndim <= reinterpreted:
            # The base's batch holds the variable dims followed by dims inside each variable.
            return sum_rightmost(_joint_log_prob(fn.base_dist, value, concrete), reinterpreted - var_ndim)
        return _variable_log_prob(fn.base_dist, value, var_ndim - reinterpreted, concrete)
    if var_ndim == 1 and isinstance(fn, (MultivariateNormal, LowRankMultivariateNormal)):
        if isinstance(fn, LowRankMultivariateNormal):
            variance = fn.cov_diag + fn.cov_factor.pow(2).sum(-1)
        else:
            variance = fn.scale_tril.pow(2).sum(-1)
        return Normal(fn.loc, variance.sqrt(), validate_args=False).log_prob(value)
    raise NotImplementedError(
        f"expected a distribution whose per-element marginals are known (Independent, MultivariateNormal, "
        f"LowRankMultivariateNormal) but got {type(fn).__name__} with var_ndim={var_ndim}; make the guide "
        "treat the site as one variable (a multivariate event) or use a supported prior"
    )
