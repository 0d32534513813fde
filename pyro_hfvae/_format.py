# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Number formatting shared by the tables of the run summary, the metrics and the examples (private)."""
import math
from collections.abc import Sequence

import numpy as np


def format_number(value: float | None, digits: int = 3, count: bool = False) -> str:
    """
    ``value`` with ``digits`` decimals (``.4g`` from 10,000 on; an integer where ``count``);
    ``None`` and non-finite values as ``str`` gives them. A negative value that rounds to
    zero (a tiny negative Monte Carlo estimate) is shown as ``0.000``, not ``-0.000``.

    Example::

        >>> format_number(-1e-5, 2), format_number(123456.0), format_number(7.6, count=True)
        ('0.00', '1.235e+05', '8')
    """
    if value is None or not math.isfinite(value):
        return str(value)
    if count:
        return str(int(round(value)))
    if abs(value) >= 1e4:
        return f"{value:.4g}"
    return f"{round(float(value), digits) + 0.0:.{digits}f}"


def format_mean_sd(values: Sequence[float], digits: int = 3, plus_minus: str = "±") -> str:
    """
    ``"mean ± sd"`` of ``values`` (the sample standard deviation), each part formatted by
    :func:`format_number`; a single value alone, which has no sd; ``"-"`` for no values.
    ``plus_minus`` is the sign between them.

    Example::

        >>> format_mean_sd([1.0, 2.0, 3.0], 2), format_mean_sd([1.0, 2.0, 3.0], 2, "+-")
        ('2.00 ± 1.00', '2.00 +- 1.00')
        >>> format_mean_sd([-0.01, 0.0], 1), format_mean_sd([0.5]), format_mean_sd([])
        ('0.0 ± 0.0', '0.500', '-')
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return "-"
    if len(values) == 1:
        return format_number(values[0], digits)
    return f"{format_number(values.mean(), digits)} {plus_minus} {format_number(values.std(ddof=1), digits)}"
