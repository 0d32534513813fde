# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Two methods compared seed by seed: runs of the same seed share the data order and the initial
random state, so the difference of their scores, seed by seed, removes the part of the spread
that the seed causes. The result pages report every method-against-method claim this way.
"""
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PairedComparison",
    "holm",
    "paired_comparison",
]


@dataclass(frozen=True)
class PairedComparison:
    r"""
    The differences :math:`d_s = a_s - b_s` of two methods' scores over seeds :math:`s`, and the
    two-sided tests of a zero difference.

    :param numpy.ndarray differences: :math:`d_s`, in the order the seeds were given.
    """

    differences: np.ndarray

    @property
    def num_seeds(self) -> int:
        """The number of seeds :math:`n`."""
        return len(self.differences)

    @property
    def mean(self) -> float:
        """The mean difference :math:`\\bar d`."""
        return float(self.differences.mean()) if self.num_seeds else math.nan

    @property
    def sd(self) -> float:
        """The sample standard deviation of the differences (``ddof=1``; NaN for one seed)."""
        return float(self.differences.std(ddof=1)) if self.num_seeds > 1 else math.nan

    @property
    def ahead(self) -> int:
        """The seeds where the first method scores higher (:math:`d_s > 0`)."""
        return int((self.differences > 0).sum())

    def format_differences(self, digits: int = 3) -> str:
        """
        The differences as signed numbers in seed order, comma-separated: the cell the result
        tables print for a comparison.

        Example::

            >>> paired_comparison([0.7, 0.5], [0.5, 0.6]).format_differences()
            '+0.200, -0.100'
        """
        return ", ".join(f"{d:+.{digits}f}" for d in self.differences)

    @property
    def t_p(self) -> float:
        r"""
        Two-sided p of the paired t-test, :math:`t = \bar d \sqrt{n} / \mathrm{sd}(d)` on
        :math:`n - 1` degrees of freedom; NaN where it is undefined (one seed, or no spread).
        """
        if self.num_seeds < 2 or not self.sd > 0:
            return math.nan
        import scipy.stats  # here, not at the top: it would add a second to every import of pyro_hfvae.training

        return float(scipy.stats.ttest_1samp(self.differences, 0.0).pvalue)

    @property
    def wilcoxon_p(self) -> float:
        """
        Two-sided p of the Wilcoxon signed-rank test (zero differences dropped; 1 where every
        difference is zero). With :math:`n` seeds it cannot go below :math:`2^{1-n}`.
        """
        if not np.any(self.differences != 0):
            return 1.0
        import scipy.stats

        return float(scipy.stats.wilcoxon(self.differences).pvalue)


def paired_comparison(first: Sequence[float], second: Sequence[float]) -> PairedComparison:
    """
    The seed-by-seed comparison of ``first`` against ``second``.

    :param first: the first method's scores, one per seed.
    :param second: the second method's scores on the same seeds, in the same order.
    :rtype: PairedComparison

    Example::

        >>> comparison = paired_comparison([0.7, 0.6, 0.8, 0.9], [0.5, 0.5, 0.6, 0.6])
        >>> comparison.differences.round(3).tolist(), comparison.ahead
        ([0.2, 0.1, 0.2, 0.3], 4)
        >>> round(comparison.mean, 3), round(comparison.t_p, 4), comparison.wilcoxon_p
        (0.2, 0.0163, 0.125)
    """
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(
            f"expected two equal-length lists of scores, one per seed, but got shapes {first.shape} and "
            f"{second.shape}; pair the runs by seed first"
        )
    return PairedComparison(first - second)


def holm(p_values: Sequence[float]) -> list[float]:
    r"""
    Holm's step-down adjustment of the p-values of a family of tests, for claims that need
    several comparisons at once (e.g. one method ahead of two baselines on two scores): rejecting
    where the adjusted :math:`\tilde p_i < \alpha` keeps the chance of any false rejection in the
    family below :math:`\alpha`, with no assumption on how the tests depend on each other. With the
    :math:`m` values sorted, :math:`p_{(1)} \le \dots \le p_{(m)}`,

    .. math::

        \tilde p_{(i)} = \min\Big(1, \max_{j \le i} (m - j + 1)\, p_{(j)}\Big).

    NaN values (undefined tests) stay NaN and do not count in :math:`m`.

    :param p_values: the family's p-values, in any order.
    :returns: the adjusted p-values, in the order given.
    :rtype: list

    Example::

        >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03, 0.2])]
        [0.04, 0.09, 0.09, 0.2]

    References

    [1] A Simple Sequentially Rejective Multiple Test Procedure,
        Sture Holm (Scandinavian Journal of Statistics, 1979)
    """
    values = np.asarray(p_values, dtype=float)
    adjusted = np.full(values.shape, math.nan)
    defined = np.flatnonzero(~np.isnan(values))
    order = defined[np.argsort(values[defined], kind="stable")]
    factors = len(order) - np.arange(len(order))
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(factors * values[order]))
    return adjusted.tolist()
