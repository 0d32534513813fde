# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The JSON files of a run directory: the JSON-lines logs (``log.jsonl``, ``evaluations.jsonl``),
one record a line, and the JSON results (``metrics.json``), written atomically.

:func:`read_jsonl` is public as :func:`pyro_hfvae.training.trainer.read_jsonl`, documented and
imported from there with the names of the run directory's files; the rest is private
(used by :class:`~pyro_hfvae.training.trainer.Trainer`).
"""
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from pyro_hfvae.util import atomic_file

logger = logging.getLogger(__name__)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """
    The records of a JSON-lines file (``[]`` if there is none); a truncated last line, as an
    interrupted write may leave, is skipped.

    :param path: the file.
    :rtype: list

    Example::

        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl"
        >>> _ = path.write_text('{"step": 1, "loss": 2.5}\\n{"step": 2, "lo')
        >>> read_jsonl(path)
        [{'step': 1, 'loss': 2.5}]
    """
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as file:
        for line in file:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("skipping a malformed line of %s", path)
    return records


def _append_record(file: IO[str], record: dict[str, Any]) -> None:
    """Appends ``record`` as one line to an open JSON-lines ``file`` and flushes it (a crash loses no record)."""
    file.write(json.dumps(record) + "\n")
    file.flush()


def _keep_records_through(path: Path, step: int) -> None:
    """
    Rewrites the JSON-lines file ``path`` (if there is one) atomically without its events and
    its records after ``step``: a run resumed from the checkpoint of ``step`` repeats them.
    """
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step and "event" not in r]
    with atomic_file(path, "w") as file:
        file.writelines(json.dumps(r) + "\n" for r in kept)


def _write_json(path: Path, value: Any) -> None:
    """Writes ``value`` to ``path`` as indented JSON, atomically."""
    with atomic_file(path, "w") as file:
        json.dump(value, file, indent=2, allow_nan=True)
        file.write("\n")
