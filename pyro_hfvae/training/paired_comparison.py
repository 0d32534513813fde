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
