# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Run configurations: TOML files (or shipped names) plus ``section.key=value`` overrides,
checked against what the library offers and resolved to every setting a run uses.

A configuration has the sections ``[data]``, ``[model]``, ``[objective]``, ``[schedule]``,
``[optimizer]``, ``[training]`` and ``[evaluation]``. The first five name a component
(``name = "..."``); their other keys are that component's constructor arguments, checked
against its signature, so every option of a library class is available and a misspelt key
is an error naming the allowed keys. The resolved configuration lists every default, so a
run directory's ``config.toml`` reproduces the run even if library defaults change.

Example::

    >>> config = resolve_config({"training": {"steps": 10}, "objective": {"beta": 2.0}})
    >>> config["model"]["name"], config["objective"]["gamma"], config["training"]["steps"]
    ('conv_hfvae', 3.0, 10)
    >>> resolve_config({"training": {"stpes": 10}})
    Traceback (most recent call last):
    ...
    pyro_hfvae.training.config.ConfigError: unknown key [training] stpes; did you mean 'steps'? ...
"""
import copy
import inspect
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pyro_hfvae.training._config_schema import (
    _COMPONENTS,
    _DATA_OPTIONS,
    _OBJECTIVE_OPTIONS,
    _OPTIMIZER_OPTIONS,
    _PLAIN_SECTIONS,
    SECTIONS,
)
from pyro_hfvae.training._config_toml import dumps_config
from pyro_hfvae.training._config_validation import (
    ConfigError,
    _check_keys,
    _check_ranges,
    _check_section,
    _check_type,
    _did_you_mean,
    _listing,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

logger = logging.getLogger(__name__)

__all__ = [
    "COMMAND_LINE_KEYS",
    "ConfigError",
    "DEFAULT_CONFIG",
    "component_factory",
    "dumps_config",
    "earlier_defaults",
    "load_config",
    "parse_override",
    "resolve_config",
    "shipped_configs",
]

_SHIPPED_DIR = Path(__file__).resolve().parent / "configs"

#: The embedded default run: HFVAE with a Concrete(3) and a Normal(10) group on procedural
#: dSprites, sized to train in a few minutes on a laptop CPU (an MLP encoder and decoder; the
#: shipped ``hfvae_dsprites`` configuration is the paper's convolutional GPU setting). The
#: Concrete is scored by its argmax (probtorch's choice): with the relaxed density its class
#: group collapsed in this run (I(x; y) 0.010 and 0.006 nats after 2,000 steps of 64, seeds 0 and
#: 1, against 2.31 and 1.61 nats with the argmax), so the class/style split showed nothing.
#: Batches of 256 (4,000 steps, 1.02M images, about 3 minutes on one CPU thread): the trainer
#: processed 4,800 images/s at 256 against 3,000 at 64 and 4,000 at 512 on this network when the
#: batch was chosen (6,800 at 256 after the fast path, docs/performance), and the
#: stratified estimator's bias falls as 1/B. The run's summary places it on the curve of this
#: configuration trained to 7.68M images over three seeds (docs/dsprites_results).
DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "data": {"name": "dsprites"},
    "model": {"name": "conv_hfvae", "num_classes": 3, "style_dim": 10, "architecture": "mlp", "hidden_dim": 256},
    "objective": {"name": "hfvae", "alpha": 1.0, "beta": 4.0, "gamma": 3.0, "concrete_scoring": "argmax"},
    "schedule": {"name": "none"},
    "optimizer": {"name": "adam", "lr": 1e-3},
    "training": dict(_PLAIN_SECTIONS["training"], steps=4000, batch_size=256),
    "evaluation": dict(_PLAIN_SECTIONS["evaluation"]),
}

#: Command-line flags (without ``--``, dashes as underscores) -> the ``section.key`` they set.
COMMAND_LINE_KEYS: dict[str, str] = {
    "data": "data.name",
    "subset": "data.subset",
    "model": "model.name",
    "objective": "objective.name",
    "steps": "training.steps",
    "batch_size": "training.batch_size",
    "lr": "optimizer.lr",
    "device": "training.device",
    "seed": "training.seed",
    "num_threads": "training.num_threads",
    "alpha": "objective.alpha",
    "beta": "objective.beta",
    "gamma": "objective.gamma",
    "log_every": "training.log_every",
    "eval_every": "training.eval_every",
    "checkpoint_every": "training.checkpoint_every",
    "preset": "evaluation.preset",
}


def component_factory(section: str, name: str) -> Callable:
    """
    The class a ``[section]`` ``name`` stands for.

    :param str section: ``"data"``, ``"model"``, ``"objective"``, ``"schedule"`` or ``"optimizer"``.
    :param str name: the component's name in the configuration.
    :rtype: type

    Example::

        >>> component_factory("model", "vlae").__name__
        'VLAE'
    """
    if section not in _COMPONENTS:
        raise ConfigError(f"expected a section naming a component, one of {_listing(_COMPONENTS)}, but got "
                          f"{section!r}")
    registry = _COMPONENTS[section]
    if name not in registry:
        allowed = sorted(registry) + (["none"] if section == "schedule" else [])
        raise ConfigError(f"expected [{section}] name to be one of {_listing(allowed)} but got {name!r}"
                          f"{_did_you_mean(str(name), allowed)}")
    return registry[name][0]()


def _signature_defaults(section: str, name: str) -> tuple[dict[str, Any], set[str]]:
    """Options of a component: (key -> default for those with a TOML-representable default, required keys)."""
    factory = component_factory(section, name)  # checks the name
    if section == "optimizer":
        return dict(_OPTIMIZER_OPTIONS[name]), set()
    excluded = _COMPONENTS[section][name][1]
    defaults, required = {}, set()
    for parameter in _parameters(factory):
        if parameter.name in excluded:
            continue
        if parameter.default is parameter.empty:
            required.add(parameter.name)
        else:
            defaults[parameter.name] = _to_toml_value(parameter.default)
    if section == "data":
        defaults.update(_DATA_OPTIONS)
    if section == "objective":
        defaults.update(_OBJECTIVE_OPTIONS.get(name, {}))
    return defaults, required


def _parameters(factory: type) -> list[inspect.Parameter]:
    """Named constructor parameters, following ``**kwargs`` to the base classes."""
    found: dict[str, inspect.Parameter] = {}
    for cls in factory.__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        for parameter in parameters:
            if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                found.setdefault(parameter.name, parameter)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return list(found.values())


def _to_toml_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_toml_value(v) for v in value]
    return value


def _resolve_component(section: str, given: Mapping[str, Any], default: Mapping[str, Any]) -> dict[str, Any]:
    name = given.get("name", default.get("name"))
    if section == "schedule" and name == "none":
        _check_keys(section, given, ["name"], "for schedule 'none' (set name = \"progressive\" for a schedule)")
        return {"name": "none"}
    if not isinstance(name, str):
        raise ConfigError(f"expected [{section}] name to be a string but got {name!r}")
    defaults, required = _signature_defaults(section, name)
    options = {k: v for k, v in given.items() if k != "name"}
    _check_keys(section, options, sorted(set(defaults) | required), f"for {section} {name!r}")
    # The embedded default's options apply only to the component it names.
    inherited = {k: v for k, v in default.items() if k != "name"} if default.get("name") == name else {}
    resolved = {"name": name}
    for key in sorted(set(defaults) | required):
        if key in options:
            resolved[key] = _check_type(section, key, options[key], defaults.get(key))
        elif key in inherited:
            resolved[key] = inherited[key]
        elif key in defaults:
            if defaults[key] is not None:
                resolved[key] = defaults[key]
        else:
            raise ConfigError(f"missing key [{section}] {key}: {section} {name!r} needs it (see the documentation "
                              f"of {component_factory(section, name).__name__})")
    return resolved


def _check_plain_section(section: str, options: Mapping[str, Any]) -> dict[str, Any]:
    defaults = _PLAIN_SECTIONS[section]
    _check_keys(section, options, list(defaults), f"in [{section}]")
    resolved = dict(defaults)
    for key, value in options.items():
        resolved[key] = _check_type(section, key, value, defaults[key])
    return resolved


def resolve_config(config: Mapping[str, Any] | None = None,
                   overrides: Mapping[str, Any] | Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """
    Checks a configuration and fills in every default.

    Sections missing from ``config`` take the embedded default (:data:`DEFAULT_CONFIG`); a
    component section that names another component than the default starts from that
    component's own defaults.

    :param dict config: ``{section: {key: value}}`` as read from TOML (``None``: the default run).
    :param overrides: ``{"section.key": value}`` or ``["section.key=value", ...]`` applied on top.
    :returns: the resolved configuration.
    :rtype: dict
    :raises ConfigError: for unknown sections, keys or names, values of the wrong type and
        inconsistent settings; the message names the key and the allowed values.
    """
    # The default run is the whole of DEFAULT_CONFIG; a given configuration takes the plain sections' defaults.
    config = copy.deepcopy(dict(config) if config is not None else {s: DEFAULT_CONFIG[s] for s in _PLAIN_SECTIONS})
    if not isinstance(overrides, Mapping):
        overrides = dict(parse_override(item) for item in overrides)
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if not key:
            raise ConfigError(f"expected an override 'section.key' but got {dotted!r}")
        _check_section(section)
        target = config.setdefault(section, {})
        if key == "name" and section != "schedule" and target.get("name", DEFAULT_CONFIG[section].get("name")) != value:
            # A new component: the options of the previous one do not apply.
            target.clear()
        target[key] = value
    for section in config:
        _check_section(section)
        if not isinstance(config[section], Mapping):
            raise ConfigError(f"expected [{section}] to be a table of settings but got {config[section]!r}")
    resolved = {}
    for section in SECTIONS:
        given = config.get(section, {})
        if section in _PLAIN_SECTIONS:
            resolved[section] = _check_plain_section(section, given)
        else:
            resolved[section] = _resolve_component(section, given, DEFAULT_CONFIG[section])
    _check_ranges(resolved)
    return resolved


def parse_override(item: str) -> tuple[str, Any]:
    """
    Parses ``"section.key=value"``; the value is read as TOML (``3``, ``1e-3``, ``true``,
    ``[1, 2]``, ``"text"``), and a bare word that is not TOML is taken as a string.

    :param str item: the override.
    :rtype: tuple

    Example::

        >>> parse_override("model.channels=[16, 32]"), parse_override("data.name=mnist")
        (('model.channels', [16, 32]), ('data.name', 'mnist'))
    """
    key, sep, text = item.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"expected an override section.key=value (e.g. training.steps=100) but got {item!r}")
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return key.strip(), value


def shipped_configs() -> dict[str, Path]:
    """
    The configurations shipped with the library, by name (file name without ``.toml``).

    :rtype: dict

    Example::

        >>> "hfvae_dsprites" in shipped_configs()
        True
    """
    return {path.stem: path for path in sorted(_SHIPPED_DIR.glob("*.toml"))}


def earlier_defaults(path: str | os.PathLike) -> dict[str, Any]:
    """
    The settings a run directory's ``config.toml`` leaves out whose default has changed since
    it was written, at the value the run was trained with, so that resuming it continues the
    same computation: an ``[optimizer] adam`` written before ``fused`` existed used the
    unfused Adam, and a run written before ``[training] flush_denormal`` existed kept subnormal
    floats.

    :param path: a run directory's ``config.toml``.
    :returns: overrides for :func:`load_config` (empty where nothing changed).
    :rtype: dict
    """
    with open(path, "rb") as file:
        config = tomllib.load(file)
    optimizer, training = config.get("optimizer", {}), config.get("training", {})
    overrides = {}
    if isinstance(optimizer, Mapping) and optimizer.get("name", "adam") == "adam" and "fused" not in optimizer:
        overrides["optimizer.fused"] = False
    if isinstance(training, Mapping) and "flush_denormal" not in training:
        overrides["training.flush_denormal"] = False
    return overrides


def load_config(source: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """
    Reads and resolves a configuration.

    :param source: a TOML file, the name of a shipped configuration (see
        :func:`shipped_configs`), or ``None`` for the embedded default run.
    :param overrides: settings applied on top (see :func:`resolve_config`).
    :returns: the resolved configuration.
    :rtype: dict
    """
    if source is None:
        return resolve_config(None, overrides)
    path = Path(source)
    shipped = shipped_configs()
    if not path.is_file():
        if str(source) in shipped:
            path = shipped[str(source)]
        elif str(source).removesuffix(".toml") in shipped:
            path = shipped[str(source).removesuffix(".toml")]
        else:
            raise ConfigError(f"expected a TOML file or a shipped configuration ({_listing(shipped)}) but got "
                              f"{str(source)!r}, which is neither{_did_you_mean(str(source), list(shipped))}")
    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"could not read {path} as TOML: {error}") from None
    try:
        return resolve_config(raw, overrides)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None

