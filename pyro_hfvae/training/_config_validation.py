# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Checking the values of a run configuration: the :class:`~pyro_hfvae.training.config.ConfigError`
an invalid one raises and the wording of its messages (the allowed values, the one nearest to a
misspelling), the sections and keys that exist, the type of a setting against its default's, and
the ranges the trainer and torch's optimisers require (private: used by
:mod:`pyro_hfvae.training.config`, which exports ConfigError).
"""
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pyro_hfvae.training._config_schema import _CHOICES, SECTIONS


class ConfigError(ValueError):
    """An invalid run configuration; the message names the section, the key and the allowed values."""

    # Public in pyro_hfvae.training.config, which tracebacks, pickles and the documentation name.
    __module__ = "pyro_hfvae.training.config"


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _listing(choices) -> str:
    return ", ".join(repr(c) for c in sorted(choices))


def _type_name(value: Any) -> str:
    return {bool: "a bool", int: "an int", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _check_type(section: str, key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default`` (ints to floats), or a ConfigError."""
    if default is None:
        return value
    where = f"[{section}] {key}"
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list)
    elif isinstance(default, Mapping):
        ok = isinstance(value, Mapping)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"expected {where} to be {_type_name(default)} (like {default!r}) but got {value!r} "
                          f"({_type_name(value)})")
    if isinstance(default, float) and math.isfinite(default) and not math.isfinite(value):
        raise ConfigError(f"expected {where} to be a finite number (like {default!r}) but got {value!r}")
    if isinstance(default, list) and default:
        # Lists of numbers (channels, betas): their items must be numbers of the same kind.
        kinds = {type(item) for item in default}
        if kinds in ({int}, {float}):
            value = [_check_type(section, f"{key}[{i}]", item, default[0]) for i, item in enumerate(value)]
    if (section, key) in _CHOICES and value not in _CHOICES[(section, key)]:
        choices = _CHOICES[(section, key)]
        raise ConfigError(f"expected {where} to be one of {_listing(choices)} but got {value!r}"
                          f"{_did_you_mean(str(value), choices)}")
    return value


def _check_keys(section: str, given: Mapping[str, Any], allowed: Sequence[str], what: str) -> None:
    for key in given:
        if key not in allowed:
            raise ConfigError(f"unknown key [{section}] {key}{_did_you_mean(key, allowed) or '.'} Allowed keys "
                              f"{what}: {', '.join(sorted(allowed))}")


#: The largest seed: numpy's generators take seeds below 2 ** 32.
_MAX_SEED = 2 ** 32 - 1


def _check_optimizer(optimizer: Mapping[str, Any]) -> None:
    """The ranges torch's optimisers require, checked before any run directory exists."""
    lr = optimizer.get("lr")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"expected [optimizer] lr > 0 but got {lr}")
    betas = optimizer.get("betas")
    if betas is not None and (len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas)):
        raise ConfigError(f"expected [optimizer] betas to be two numbers in [0, 1), like [0.9, 0.999], but got "
                          f"{betas}")
    for key, low, inclusive in (("eps", 0.0, True), ("weight_decay", 0.0, True), ("clip_norm", 0.0, False),
                                ("lrd", 0.0, False)):
        value = optimizer.get(key)
        if value is not None and not (value >= low if inclusive else value > low):
            raise ConfigError(f"expected [optimizer] {key} {'>=' if inclusive else '>'} {low:g} but got {value}")


def _check_ranges(config: dict[str, dict[str, Any]]) -> None:
    training = config["training"]
    # log_every and checkpoint_every count steps; checkpoint_every and eval_every 0: none periodic;
    # num_threads 0: torch's default.
    for key, minimum in (("steps", 1), ("batch_size", 2), ("log_every", 1), ("checkpoint_every", 0),
                         ("eval_every", 0), ("num_threads", 0)):
        if training[key] < minimum:
            raise ConfigError(f"expected [training] {key} >= {minimum} but got {training[key]}")
    for section in ("training", "evaluation"):
        seed = config[section]["seed"]
        if seed < 0:
            raise ConfigError(f"expected [{section}] seed >= 0 but got {seed}")
        if seed > _MAX_SEED:
            raise ConfigError(f"expected [{section}] seed <= {_MAX_SEED} but got {seed}")
    subset = config["data"].get("subset", 0)
    if subset < 0:
        raise ConfigError(f"expected [data] subset >= 0 (0: the whole data set) but got {subset}")
    device = training["device"]
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise ConfigError(f"expected [training] device to be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' but got "
                          f"{device!r}")
    evaluation = config["evaluation"]
    for key in ("num_train", "num_test", "information_points"):
        if evaluation[key] < 0:
            raise ConfigError(f"expected [evaluation] {key} >= 0 (0: the preset's value) but got {evaluation[key]}")
    from pyro_hfvae.metrics import METRICS

    for metric in evaluation["metrics"]:
        if not isinstance(metric, str) or metric not in METRICS:
            raise ConfigError(f"expected [evaluation] metrics from {_listing(METRICS)} but got {metric!r}"
                              f"{_did_you_mean(str(metric), METRICS)}")
    _check_optimizer(config["optimizer"])
    warmup_steps = config["objective"].get("warmup_steps", 0)
    if warmup_steps < 0:
        raise ConfigError(f"expected [objective] warmup_steps >= 0 (0: no warm-up) but got {warmup_steps}")
    particles = config["objective"].get("num_particles", 1)
    if particles < 1:
        raise ConfigError(f"expected [objective] num_particles >= 1 but got {particles}")
    schedule = config["schedule"]["name"]
    if schedule == "progressive" and config["objective"]["name"] != "hit":
        raise ConfigError(f"expected [objective] name = 'hit' with [schedule] name = 'progressive' (the schedule "
                          f"sets the per-site KL weights of HITLoss) but got objective "
                          f"{config['objective']['name']!r}")
    if schedule == "progressive" and config["objective"].get("betas"):
        raise ConfigError("expected no [objective] betas with a progressive schedule, which sets them; remove "
                          "the betas table or set [schedule] name = 'none'")


def _check_section(section: str) -> None:
    if section not in SECTIONS:
        raise ConfigError(f"unknown section [{section}]{_did_you_mean(section, SECTIONS) or '.'} Sections: "
                          f"{', '.join(SECTIONS)}")

