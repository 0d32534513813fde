# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Flags the experiment scripts share: ``--preset`` (named sets of flag defaults that explicit flags
override) and the result-file flags ``--results``, ``--overwrite`` and ``--summary``; how a result
file is written; and how their tables write a mean over seeds.
"""
import argparse
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyro_hfvae._format import format_mean_sd
from pyro_hfvae.util import atomic_file


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


def mean_sd(values: Sequence[float], digits: int = 3, plus_minus: str = "+-") -> str:
    """
    ``"mean +- sd"`` of ``values`` (the sample standard deviation); a single value alone, which has
    no sd; ``"-"`` for no values. ``plus_minus`` is the sign between them. It calls the library's
    formatter, so a tiny negative mean reads ``0.000`` here as in the library's own tables.

    Example::

        >>> mean_sd([1.0, 2.0, 3.0], digits=2)
        '2.00 +- 1.00'
        >>> mean_sd([1.0, 2.0, 3.0], digits=2, plus_minus="±")
        '2.00 ± 1.00'
        >>> mean_sd([0.5]), mean_sd([-0.0001, 0.0]), mean_sd([])
        ('0.500', '0.000 +- 0.000', '-')
    """
    return format_mean_sd(values, digits, plus_minus)


def read_results(folder: str | os.PathLike, pattern: str = "*_seed*.json") -> list[dict]:
    """The result files in ``folder`` whose names match ``pattern``, read in name order."""
    return [json.loads(path.read_text()) for path in sorted(Path(folder).glob(pattern))]


def write_json(path: str | os.PathLike, record, sort_keys: bool = True) -> None:
    """
    Writes ``record`` as JSON to ``path`` atomically (a killed run leaves the old file or none),
    creating the folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "w") as file:
        json.dump(record, file, indent=1, sort_keys=sort_keys)
