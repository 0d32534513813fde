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
import difflib
import inspect
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

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


class ConfigError(ValueError):
    """An invalid run configuration; the message names the section, the key and the allowed values."""


def _dataset(name: str) -> Callable:
    from pyro_hfvae import datasets

    return getattr(datasets, name)


def _model(module: str, name: str) -> Callable:
    import importlib

    return getattr(importlib.import_module(f"pyro_hfvae.models.{module}"), name)


def _objective(name: str) -> Callable:
    if name == "HFVAELoss":
        from pyro_hfvae.infer.hfvae import HFVAELoss

        return HFVAELoss
    from pyro_hfvae.infer.hit import HITLoss

    return HITLoss


def _schedule() -> Callable:
    from pyro_hfvae.infer.progressive import ProgressiveSchedule

    return ProgressiveSchedule


def _optimizer(name: str) -> Callable:
    import pyro.optim

    return getattr(pyro.optim, name)


# name -> (lazy class, arguments filled in by the trainer and so not configurable)
_COMPONENTS: dict[str, dict[str, tuple[Callable[[], Callable], frozenset]]] = {
    "data": {
        "digits": (lambda: _dataset("Digits"), frozenset({"return_factors", "device"})),
        "dsprites": (lambda: _dataset("DSprites"), frozenset({"return_factors", "device"})),
        "fashion_mnist": (lambda: _dataset("FashionMNIST"), frozenset({"return_factors", "device"})),
        "mnist": (lambda: _dataset("MNIST"), frozenset({"return_factors", "device"})),
        "shapes3d": (lambda: _dataset("Shapes3D"), frozenset({"return_factors", "device"})),
    },
    "model": {
        "conv_hfvae": (lambda: _model("conv_hfvae", "ConvHFVAE"), frozenset({"image_shape"})),
        # ``name`` (the pyro.module name) would clash with the section's component name.
        "hierarchical_vae": (lambda: _model("hierarchical_vae", "HierarchicalVAE"), frozenset({"image_shape", "name"})),
        "ladder_vae": (lambda: _model("ladder_vae", "LadderVAE"), frozenset({"image_shape", "name"})),
        "semi_supervised_hfvae": (lambda: _model("semi_supervised", "SemiSupervisedHFVAE"), frozenset({"image_shape"})),
        "vlae": (lambda: _model("vlae", "VLAE"), frozenset({"image_shape"})),
    },
    "objective": {
        "hfvae": (
            lambda: _objective("HFVAELoss"),
            # ``kernel`` is set by the ``compile`` option (_OBJECTIVE_OPTIONS).
            frozenset({"dataset_size", "max_plate_nesting", "strict_enumeration_warning", "retain_graph", "kernel"}),
        ),
        "hit": (
            lambda: _objective("HITLoss"),
            frozenset({"dataset_size", "max_plate_nesting", "strict_enumeration_warning", "retain_graph"}),
        ),
    },
    "schedule": {
        "progressive": (_schedule, frozenset({"levels"})),
    },
    "optimizer": {
        "adam": (lambda: _optimizer("Adam"), frozenset()),
        "clipped_adam": (lambda: _optimizer("ClippedAdam"), frozenset()),
    },
}

# Keyword options of the pyro.optim wrappers (they take one dict of torch optimiser arguments).
_OPTIMIZER_OPTIONS = {
    "adam": {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "fused": True},
    "clipped_adam": {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "clip_norm": 10.0,
                     "lrd": 1.0},
}

#: Settings of the sections that name no component: key -> default.
_PLAIN_SECTIONS: dict[str, dict[str, Any]] = {
    "training": {
        "steps": 2000,
        "batch_size": 64,
        "seed": 0,
        "device": "auto",
        # Pyro steps on small networks gain little from several CPU threads, and OpenMP threads that
        # wait for a busy core cost up to 10x the CPU time (measured on a shared 2-core machine).
        "num_threads": 1,
        # glibc malloc keeps freed memory for the next step (pyro_hfvae.training.allocator): 17 % faster steps on a CPU.
        "retain_freed_memory": True,
        # Subnormal floats as zero (torch.set_flush_denormal): Adam's moments of weights that never get a
        # gradient (dSprites' empty border pixels) decay into subnormals, which tripled fused Adam's time.
        "flush_denormal": True,
        "log_every": 10,
        "checkpoint_every": 500,
        "eval_every": 0,
    },
    "evaluation": {
        "preset": "auto",
        "metrics": [],
        "num_train": 0,
        "num_test": 0,
        "information_points": 0,
        "seed": 0,
    },
}

_CHOICES = {
    ("evaluation", "preset"): ("auto", "fast", "full", "none"),
}

#: Sections in the order a configuration file lists them.
SECTIONS = ("data", "model", "objective", "schedule", "optimizer", "training", "evaluation")

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
#: configuration trained to 3.07M images over three seeds (docs/dsprites_results).
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

# Data-set options that the trainer reads itself (not constructor arguments): ``subset`` (train on that many
# items, 0: all) and ``hold_out`` ({factor_name: classes}: the factor combinations left out of training, see
# GroundTruthDataset.hold_out).
_DATA_OPTIONS = {"subset": 0, "hold_out": {}}
# Objective options that the trainer reads itself or sets otherwise than the constructor's default:
# ``compile = true`` trains with :class:`~pyro_hfvae.infer.jit.JitHFVAELoss`, the HFVAE loss with torch.compile'd
# kernels; ``global_batch`` (default true here): in a data-parallel run (torchrun), estimate HFVAE's
# aggregate-posterior marginals over the global batch (false in a single process, whose batch is global).
_OBJECTIVE_OPTIONS = {"hfvae": {"global_batch": True, "compile": False}}


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _listing(choices) -> str:
    return ", ".join(repr(c) for c in sorted(choices))


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
