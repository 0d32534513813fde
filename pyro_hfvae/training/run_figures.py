# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Every figure of a training run, and the comparison of several runs."""
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyro_hfvae.plots._figure import is_image_shape
from pyro_hfvae.plots.latent_traversals import _is_categorical, plot_latent_traversals
from pyro_hfvae.plots.mig_scatter import plot_mig_scatter
from pyro_hfvae.plots.reconstructions import plot_reconstructions
from pyro_hfvae.plots.structure_graph import plot_structure_graph
from pyro_hfvae.plots.training_curves import plot_training_curves
from pyro_hfvae.plots.variable_information import plot_variable_information

logger = logging.getLogger(__name__)

__all__ = [
    "FIGURES_DIR",
    "plot_comparison",
    "plot_run",
]

#: The folder of a run directory that holds its figures.
FIGURES_DIR = "figures"


def _reference_images(trainer, count: int) -> torch.Tensor:
    positions = np.random.RandomState(trainer.config["evaluation"]["seed"]).choice(
        trainer.dataset_size, min(count, trainer.dataset_size), replace=False)
    return trainer.observations(torch.from_numpy(positions).to(trainer.device))


def _read_metrics(run_dir: Path) -> dict[str, Any] | None:
    from pyro_hfvae.training.trainer import METRICS_FILE

    path = run_dir / METRICS_FILE
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def plot_run(trainer, directory: str | os.PathLike | None = None,
             evaluation: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """
    Writes every figure that applies to a run, as PNG files:

    - ``training_curves.png``: the objective's terms over training (from ``log.jsonl``);
    - ``variable_information.png``: I(x; z_d) per variable, sorted, categorical ones marked;
    - ``latent_traversals.png``: traversals, rows in decreasing order of information;
    - ``reconstructions.png``: data, reconstructions and prior samples (image data);
    - ``structure_graph.png``: the latent structure with the objective's weights;
    - ``information_flow.png``: I(x; z_l) per level at the end of each stage (progressive runs).

    :param trainer: a :class:`~pyro_hfvae.training.trainer.Trainer` (e.g. from ``Trainer.from_run``).
    :param directory: where to write (default: ``figures/`` in the run directory).
    :param dict evaluation: the result of :meth:`Trainer.evaluate
        <pyro_hfvae.training.trainer.Trainer.evaluate>` (default: the run's ``metrics.json``, if any).
    :returns: figure name -> path written.
    :rtype: dict
    """
    from pyro_hfvae.infer.inspect import structure_graph
    from pyro_hfvae.training.trainer import LOG_FILE, read_jsonl

    if directory is None:
        if trainer.run_dir is None:
            raise ValueError("expected a directory or a trainer with a run directory but got neither")
        directory = trainer.run_dir / FIGURES_DIR
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if evaluation is None and trainer.run_dir is not None:
        evaluation = _read_metrics(trainer.run_dir)
    written: dict[str, Path] = {}

    def write(name: str, draw) -> None:
        path = directory / f"{name}.png"
        try:
            draw(path)
        except (ValueError, RuntimeError) as error:
            logger.warning("could not draw %s: %s", name, error)
            return
        written[name] = path

    if trainer.run_dir is not None:
        records = read_jsonl(trainer.run_dir / LOG_FILE)
        if any("event" not in r for r in records):
            write("training_curves", lambda path: plot_training_curves(records, path=path))
    references = _reference_images(trainer, 9)
    with trainer.evaluation_mode():
        posterior = trainer.posterior(references[:1])
    discrete = [site for site, fn in posterior.items() if _is_categorical(fn)]
    variables = labels = None
    if evaluation is not None:
        information = evaluation["information"]
        write("variable_information", lambda path: plot_variable_information(
            information["variables"], discrete_sites=discrete, num_data=information["num_data"], path=path))
        ranked = sorted(((value, site, index) for site, values in information["variables"].items()
                         for index, value in enumerate(values)), reverse=True)
        variables = [(site, -1 if site in discrete else index) for _, site, index in ranked]
        labels = {(site, -1 if site in discrete else index): f"I={value:.2f}" for value, site, index in ranked}
    with trainer.evaluation_mode():
        if is_image_shape(tuple(references.shape[1:])):
            write("latent_traversals", lambda path: plot_latent_traversals(
                trainer.model, references, variables=variables, labels=labels, path=path))
            write("reconstructions", lambda path: plot_reconstructions(trainer.model, references, path=path))
        graph = structure_graph(trainer.model.model, trainer.model.guide, references[:2], loss=trainer.loss)
        title = f"latent structure ({trainer.config['model']['name']}, objective {trainer.config['objective']['name']})"
        write("structure_graph", lambda path: plot_structure_graph(graph, title=title, path=path))
    flow = trainer.information_flow
    if flow is not None and flow.records:
        write("information_flow", lambda path: flow.plot(path))
    return written


def plot_comparison(run_dirs: Sequence[str | os.PathLike], path: str | os.PathLike) -> Path:
    """
    The MIG / MIG-sup scatter plot of several evaluated runs (:func:`~pyro_hfvae.plots.plot_mig_scatter`).

    :param run_dirs: run directories with a ``metrics.json`` holding ``mig`` and ``mig_sup``.
    :param path: where to save the PNG.
    :returns: the path written.
    :rtype: pathlib.Path
    """
    runs = {}
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"expected a run directory but {run_dir} "
                                    f"{'is a file' if run_dir.exists() else 'does not exist'}; pass the directories "
                                    "of evaluated runs (pyro-hfvae evaluate RUN_DIR)")
        try:
            evaluation = _read_metrics(run_dir)
        except ValueError as error:
            raise ValueError(f"could not read {run_dir}/metrics.json as JSON ({error}); evaluate the run again: "
                             f"pyro-hfvae evaluate {run_dir}") from None
        if evaluation is None:
            raise FileNotFoundError(f"expected {run_dir}/metrics.json but there is none; evaluate the run first: "
                                    f"pyro-hfvae evaluate {run_dir}")
        if not isinstance(evaluation, Mapping) or not isinstance(evaluation.get("metrics"), Mapping):
            raise ValueError(f"expected {run_dir}/metrics.json to hold the metrics of pyro-hfvae evaluate but it "
                             f"does not; evaluate the run again: pyro-hfvae evaluate {run_dir}")
        name = run_dir.name
        while name in runs:
            name = f"{run_dir.parent.name}/{name}"
        runs[name] = evaluation["metrics"]
    plot_mig_scatter(runs, path=path)
    return Path(path)
