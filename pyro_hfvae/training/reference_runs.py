# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Reference curves: a configuration trained far longer than a quick run of it, over several
seeds, so that a run's summary can say where its budget stands ("at 1.0M images; the same
configuration reached MIG ... at 7.7M images; the paper trained for 30.7M"). Each curve is a
JSON file in the ``reference`` folder next to this module, written by
``examples/hfvae_dsprites.py --reference-out`` from the result files of its runs; a run matches
a curve when every setting the curve names has the same value in the run's configuration.
"""
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "REFERENCE_DIR",
    "matching_reference",
    "reference_curves",
]

#: The folder of the shipped reference curves.
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


def reference_curves(folder: str | Path | None = None) -> list[dict[str, Any]]:
    """
    The reference curves in ``folder``, in file-name order. Each is a dict with ``name``,
    ``source`` (where its runs are reported), ``seeds``, ``dataset_size``, ``configuration``
    (``{section: {key: value}}``, the settings a run must share), ``points`` (one per
    evaluation: ``images`` and ``metrics`` as ``{name: [mean, sd]}`` over the seeds) and
    ``paper`` (``images``: the paper's budget; ``metrics``: its values, as text).

    :param folder: the folder of the JSON files (default :data:`REFERENCE_DIR`).
    :type folder: str or pathlib.Path
    :rtype: list
    """
    folder = REFERENCE_DIR if folder is None else Path(folder)
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))]


def matching_reference(config: Mapping[str, Mapping[str, Any]],
                       folder: str | Path | None = None) -> dict[str, Any] | None:
    """
    The first reference curve whose every setting has the same value in ``config``, else ``None``.

    :param dict config: a resolved run configuration.
    :param folder: the folder of the reference curves (default :data:`REFERENCE_DIR`).
    :type folder: str or pathlib.Path
    :rtype: dict or None

    Example::

        >>> import json, tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> curve = {"name": "demo", "configuration": {"training": {"batch_size": 256}}}
        >>> _ = (folder / "demo.json").write_text(json.dumps(curve))
        >>> matching_reference({"training": {"batch_size": 256, "steps": 10}}, folder)["name"]
        'demo'
        >>> matching_reference({"training": {"batch_size": 64}}, folder) is None
        True
    """
    for curve in reference_curves(folder):
        if all(section in config and key in config[section] and config[section][key] == value
               for section, options in curve["configuration"].items() for key, value in options.items()):
            return curve
    return None
