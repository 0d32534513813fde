# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Number formatting shared by the tables of the run summary and the metrics (private)."""
import math


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
