# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Flags the experiment scripts share: ``--preset`` (named sets of flag defaults that explicit flags
override) and the result-file flags ``--results``, ``--overwrite`` and ``--summary``; and how their
tables write a mean over seeds.
"""
import argparse
from collections.abc import Mapping, Sequence

import numpy as np


def add_preset_flag(parser: argparse.ArgumentParser, presets: Mapping[str, Mapping]) -> None:
    """Adds ``--preset NAME`` (one of ``presets``) to ``parser``."""
    parser.add_argument("--preset", choices=sorted(presets), default=None,
                        help="a named set of settings (flags given explicitly take precedence)")


def parse_with_preset(parser: argparse.ArgumentParser, presets: Mapping[str, Mapping],
                      argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    Parses ``argv``: the chosen preset's settings become the defaults, so explicit flags win.

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> _ = parser.add_argument("--epochs", type=int, default=1)
        >>> add_preset_flag(parser, {"paper": {"epochs": 100}})
        >>> parse_with_preset(parser, {"paper": {"epochs": 100}}, ["--preset", "paper"]).epochs
        100
        >>> parse_with_preset(parser, {"paper": {"epochs": 100}}, ["--epochs", "7", "--preset", "paper"]).epochs
        7
    """
    preset = parser.parse_known_args(argv)[0].preset
    parser.set_defaults(**presets.get(preset, {}))
    return parser.parse_args(argv)


def add_result_flags(parser: argparse.ArgumentParser, results: str) -> None:
    """Adds ``--results DIR`` (default ``results``), ``--overwrite`` and ``--summary`` to ``parser``."""
    parser.add_argument("--results", default=results, help="the folder of the result files")
    parser.add_argument("--overwrite", action="store_true", help="recompute results that exist")
    parser.add_argument("--summary", action="store_true", help="only print the table of the result files")


def mean_sd(values: Sequence[float], digits: int = 3) -> str:
    """
    ``"mean +- sd"`` of ``values`` (the sample standard deviation; ``nan`` for a single value).

    Example::

        >>> mean_sd([1.0, 2.0, 3.0], digits=2)
        '2.00 +- 1.00'
    """
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.{digits}f} +- {sd:.{digits}f}"
