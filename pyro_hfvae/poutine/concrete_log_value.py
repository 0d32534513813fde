# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Concrete samples that keep their exact logarithm.

A confident Concrete posterior (logits that differ by a few tens) draws samples whose small
components underflow to 0 on the simplex; scored there, such a sample's density is clamped
and wrong (a KL term of -2 nats instead of 75 was measured in float32). The objectives
therefore draw every Concrete sample in log space, as torch itself draws it
(``ExpRelaxedCategorical`` followed by ``exp``), and keep the logarithm on the sample, as
Pyro's straight-through Concrete keeps its soft value on its one-hot sample.
"""

from pyro.poutine.messenger import Messenger
from torch.distributions import RelaxedOneHotCategorical, TransformedDistribution

from pyro_hfvae.distributions.util import _unwrap, log_space_concrete

__all__ = [
    "ConcreteLogValueMessenger",
]


class ConcreteLogValueMessenger(Messenger):
    r"""
    Samples every latent Concrete site (``RelaxedOneHotCategorical``, also inside
    ``Independent``, ``Expanded`` and ``Masked`` wrappers) as the exponential of an
    ExpConcrete sample, the way torch samples it, and keeps that exact logarithm on the value
    as ``value._concrete_log_value`` (read by
    :func:`~pyro_hfvae.distributions.util.concrete_log_value`). The value is the one Pyro
    would draw, bit for bit, from the same random state; only its logarithm is kept, which
    the simplex loses where a component underflows. Observed sites, sites whose value is
    already set and Concrete subclasses that draw their own way (the straight-through
    Concrete) are left alone; their logarithm is then the clamped ``log x``.

    :class:`~pyro_hfvae.HFVAELoss` and :class:`~pyro_hfvae.HITLoss` apply it to the guide
    and score every latent site whose prior and posterior are both Concrete at that
    logarithm, under the ExpConcrete densities
    (:func:`~pyro_hfvae.distributions.util.log_space_concrete`); the ELBO and every term of
    the decomposition are invariant under that change of variables.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro import poutine
        >>> def guide():
        ...     pyro.sample("y", dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.tensor([0., 90., 0.])))
        >>> pyro.set_rng_seed(0)
        >>> value = poutine.trace(ConcreteLogValueMessenger()(guide)).get_trace().nodes["y"]["value"]
        >>> value
        tensor([0., 1., 0.])
        >>> value._concrete_log_value > -100   # what the simplex lost
        tensor([False,  True, False])

    References

    [1] The Concrete Distribution: A Continuous Relaxation of Discrete Random Variables,
        Chris J. Maddison, Andriy Mnih, Yee Whye Teh (2017)
    """

    def _process_message(self, msg) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None or msg["done"]:
            return
        fn = msg["fn"]
        inner = _unwrap(fn, independent=True)
        # A subclass that draws its own way (straight-through, pre-drawn noise) keeps its sample.
        if not isinstance(inner, RelaxedOneHotCategorical):
            return
        if type(inner).rsample is not TransformedDistribution.rsample:
            return
        # As TorchDistributionMixin.__call__ draws: rsample(sample_shape), then torch's ExpTransform.
        log_value = log_space_concrete(fn).rsample(*msg["args"], **msg["kwargs"])
        value = log_value.exp()
        value._concrete_log_value = log_value
        msg["value"] = value
