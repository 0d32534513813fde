# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Writing a run configuration as TOML text: :func:`~pyro_hfvae.training.config.dumps_config`,
exported by :mod:`pyro_hfvae.training.config`, and the TOML form of a configuration's keys and
values (private: used by :mod:`pyro_hfvae.training.config`).
"""
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from pyro_hfvae.training._config_validation import ConfigError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"expected a TOML value (bool, number, string, list or table) but got {value!r}")


def dumps_config(config: Mapping[str, Mapping[str, Any]], header: str = "") -> str:
    """
    Writes a configuration as TOML (``name`` first in each section, then the keys sorted).

    :param dict config: ``{section: {key: value}}``.
    :param str header: comment lines put at the top.
    :rtype: str

    Example::

        >>> print(dumps_config({"training": {"steps": 10, "device": "cpu"}}))
        [training]
        device = "cpu"
        steps = 10
        <BLANKLINE>
    """
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for section, options in config.items():
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        keys = (["name"] if "name" in options else []) + sorted(k for k in options if k != "name")
        lines += [f"{_toml_key(key)} = {_toml_value(options[key])}" for key in keys]
    return "\n".join(lines) + "\n"
