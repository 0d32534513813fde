# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Scans a grid of per-layer rate weights and measures what each setting is good for.

Xiao and Bamler (2023) train one hierarchical VAE per setting of
:math:`(\\beta_1, \\dots, \\beta_L)` and compare the layers' rates with the performance in
three uses: reconstruction (PSNR), representation (classifier accuracy on each layer's
posterior means) and generation (sample quality). :func:`rate_grid` does that for any
:class:`~pyro_hfvae.models.ModelProtocol` (any of the library's models);
:mod:`pyro_hfvae.plots.rate_grid` draws the rate-rate-metric view.
"""

import csv
import itertools
import logging
import math
import os
import time
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from pyro_hfvae.distributions.util import latent_sites
from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.util import atomic_file

logger = logging.getLogger(__name__)

__all__ = [
    "average_rate_grids",
    "default_betas_grid",
    "inception_score",
    "rate_grid",
    "read_rate_grid_csv",
    "write_rate_grid_csv",
]


def default_betas_grid(
    site_names: Sequence[str], num_betas: int = 5, beta_range: tuple[float, float] = (0.1, 10.0)
) -> list[dict[str, float]]:
    """
    Every combination of ``num_betas`` log-spaced weights per site (the paper scans 21 x 21
    from 0.1 to 10).

    :param site_names: the latent sites.
    :param int num_betas: number of weights per site.
    :param beta_range: smallest and largest weight.
    :returns: a list of dicts site -> weight, the first site varying slowest.
    :rtype: list

    Example::

        >>> grid = default_betas_grid(["z1", "z2"], 2)
        >>> [tuple(round(b, 2) for b in betas.values()) for betas in grid]
        [(0.1, 0.1), (0.1, 10.0), (10.0, 0.1), (10.0, 10.0)]
    """
    low, high = beta_range
    if num_betas < 1 or not 0 < low <= high or not math.isfinite(high):
        raise ValueError(
            f"expected num_betas >= 1 and 0 < low <= high but got num_betas={num_betas}, beta_range={beta_range}"
        )
    values = np.geomspace(low, high, num_betas).tolist() if num_betas > 1 else [float(low)]
    return [dict(zip(site_names, combo)) for combo in itertools.product(values, repeat=len(site_names))]


def inception_score(class_probs: np.ndarray) -> float:
    r"""
    :math:`\exp\big(\mathbb{E}_x\, \mathrm{KL}(p(y \mid x) \,\|\, p(y))\big)` of a classifier's
    predictive probabilities on generated samples, :math:`p(y)` being their mean (Salimans
    et al., 2016). It is between 1 and the number of classes; higher means confident
    (sharp) predictions spread over all classes (diverse).

    :param numpy.ndarray class_probs: ``(num_samples, num_classes)`` probabilities.
    :rtype: float

    Example::

        >>> import numpy as np
        >>> round(inception_score(np.eye(4)), 6), round(inception_score(np.full((4, 4), 0.25)), 6)
        (4.0, 1.0)
    """
    probs = np.asarray(class_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] < 1:
        raise ValueError(f"expected probabilities of shape (num_samples, num_classes) but got shape {probs.shape}")
    probs = np.clip(probs, 1e-12, 1.0)
    marginal = probs.mean(0, keepdims=True)
    return float(np.exp((probs * (np.log(probs) - np.log(marginal))).sum(1).mean()))


def average_rate_grids(grids: Sequence[Sequence[Mapping[str, float]]]) -> list[dict[str, float]]:
    """
    The per-setting mean of every column over several grids of the same settings (for
    example one per seed), in the first grid's order; the ``beta/`` columns are kept as
    they are. A column that some grid lacks for a setting is averaged over the grids that
    have it.

    :param grids: tables of :func:`rate_grid` (or :func:`read_rate_grid_csv`).
    :returns: one row per setting.
    :rtype: list

    Example::

        >>> seed0 = [{"beta/z": 1.0, "psnr": 12.0}, {"beta/z": 2.0, "psnr": 10.0}]
        >>> seed1 = [{"beta/z": 2.0, "psnr": 11.0}, {"beta/z": 1.0, "psnr": 13.0}]
        >>> average_rate_grids([seed0, seed1])
        [{'beta/z': 1.0, 'psnr': 12.5}, {'beta/z': 2.0, 'psnr': 10.5}]
    """
    if not grids:
        raise ValueError("expected at least one grid but got none")

    def setting(row: Mapping[str, float]) -> tuple:
        return tuple(sorted((key, value) for key, value in row.items() if key.startswith("beta/")))

    keys = [setting(row) for row in grids[0]]
    by_setting = [{setting(row): row for row in grid} for grid in grids]
    for i, grid in enumerate(by_setting[1:], start=1):
        if set(grid) != set(keys):
            raise ValueError(
                f"expected every grid to have the settings of the first but grid {i} differs in "
                f"{sorted(set(grid) ^ set(keys))}; average grids of the same betas only"
            )
    averaged = []
    for key in keys:
        rows = [grid[key] for grid in by_setting]
        betas = dict(key)
        columns = dict.fromkeys(column for row in rows for column in row)
        averaged.append(
            {
                column: betas[column] if column in betas else float(np.mean([r[column] for r in rows if column in r]))
                for column in columns
            }
        )
    return averaged


def write_rate_grid_csv(rows: Sequence[Mapping[str, float]], path: str | os.PathLike) -> None:
    """
    Writes the rows of :func:`rate_grid` as CSV (columns in order of first appearance),
    atomically (a temporary file in the same folder, then :func:`os.replace`).

    :param rows: the table.
    :param path: the CSV file.
    """
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_file(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def read_rate_grid_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """
    Reads a table written by :func:`write_rate_grid_csv` (empty cells are left out).

    :param path: the CSV file.
    :returns: one dict column -> float per row.
    :rtype: list
    """
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def _site_names(model: torch.nn.Module, example: torch.Tensor) -> tuple[str, ...]:
    names = getattr(model, "site_names", None)
    if names is None:
        with torch.no_grad():
            names = [name for name, _ in latent_sites(poutine.trace(model.guide).get_trace(example))]
    return tuple(names)


def _as_betas(setting, site_names: Sequence[str]) -> dict[str, float]:
    if isinstance(setting, Mapping):
        return {str(k): float(v) for k, v in setting.items()}
    setting = tuple(setting)
    if len(setting) != len(site_names):
        raise ValueError(
            f"expected one weight per latent site {tuple(site_names)} in every grid setting "
            f"but got {setting}; pass dicts site -> weight to set only some"
        )
    return {name: float(b) for name, b in zip(site_names, setting)}


def _batches(num: int, batch_size: int):
    for start in range(0, num, batch_size):
        yield slice(start, min(start + batch_size, num))


#: Equal parts of training whose mean losses make up a row's loss curve.
CURVE_POINTS = 10


def _train(model, data: torch.Tensor, loss: HITLoss, steps: int, batch_size: int, lr: float, device) -> list[float]:
    """
    ``steps`` SVI steps with :class:`pyro.optim.Adam` on shuffled minibatches (a new
    permutation of ``data`` whenever the current one runs out); clears the param store first.
    :returns: the loss curve: the mean loss per image over each of :data:`CURVE_POINTS` equal
        parts of the steps (fewer when there are fewer steps; ``[nan]`` without steps).
    """
    pyro.clear_param_store()
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": lr}), loss=loss)
    num_data = data.shape[0]
    order = torch.randperm(num_data)
    position, losses = 0, []
    for _ in range(steps):
        if position + batch_size > num_data:
            order, position = torch.randperm(num_data), 0
        idx = order[position : position + batch_size]
        position += batch_size
        value = svi.step(data[idx].to(device), idx=idx.to(device), dataset_size=num_data)
        losses.append(value / num_data)
    if not losses:
        return [float("nan")]
    return [float(np.mean(part)) for part in np.array_split(np.asarray(losses), min(CURVE_POINTS, steps))]


@torch.no_grad()
def _evaluate(model, images: torch.Tensor, loss: HITLoss, eval_batch_size: int, device):
    totals: dict[str, float] = {}
    squared_error = 0.0
    means: dict[str, list] = {}
    for rows in _batches(images.shape[0], eval_batch_size):
        x = images[rows].to(device)
        loss.loss(model.model, model.guide, x)
        for name, value in loss.terms.items():
            if not name.startswith("beta/"):
                totals[name] = totals.get(name, 0.0) + value * x.shape[0]
        squared_error += (model.reconstruct(x) - x).pow(2).sum().item()
        for name, mean in model.encode(x).items():
            means.setdefault(name, []).append(mean.reshape(x.shape[0], -1).cpu().numpy())  # sklearn needs host arrays
    num = images.shape[0]
    results = {name: total / num for name, total in totals.items()}
    mse = squared_error / images.numel()
    results["psnr"] = 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")
    return results, {name: np.concatenate(parts) for name, parts in means.items()}


def _classifiers(knn_neighbors: int) -> dict[str, Callable[[], object]]:
    return {
        "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "knn": lambda: KNeighborsClassifier(n_neighbors=knn_neighbors),
        "svm_linear": lambda: make_pipeline(StandardScaler(), SVC(kernel="linear")),
        "svm_rbf": lambda: make_pipeline(StandardScaler(), SVC(kernel="rbf")),
    }


def _check_arguments(data, steps: int, batch_size: int, eval_batch_size: int, num_samples: int,
                     knn_neighbors: int) -> None:
    if not isinstance(data, torch.Tensor) or data.dim() < 2 or data.shape[0] < 1:
        raise ValueError(
            f"expected data to be a tensor of images (N, C, H, W) but got {type(data).__name__}"
            f"{'' if not isinstance(data, torch.Tensor) else ' of shape ' + str(tuple(data.shape))}"
        )
    if steps < 0 or batch_size < 1 or eval_batch_size < 1 or num_samples < 1 or knn_neighbors < 1:
        raise ValueError(
            "expected steps >= 0 and positive batch_size, eval_batch_size, num_samples, "
            f"knn_neighbors but got {steps}, {batch_size}, {eval_batch_size}, {num_samples}, "
            f"{knn_neighbors}"
        )


class _Uses:
    """
    The representation and generation scores of a trained model: classifiers fitted on a
    fixed random half of the labelled evaluation images and tested on the other half.
    """

    def __init__(self, eval_images: torch.Tensor, eval_labels, knn_neighbors: int, num_samples: int,
                 seed: int | None) -> None:
        labels = np.asarray(eval_labels.cpu() if isinstance(eval_labels, torch.Tensor) else eval_labels)
        if labels.shape != (eval_images.shape[0],):
            raise ValueError(
                f"expected one label per evaluation image ({eval_images.shape[0]}) but got "
                f"labels of shape {labels.shape}"
            )
        if len(np.unique(labels)) < 2 or eval_images.shape[0] < 4:
            raise ValueError("expected at least 4 labelled evaluation images of at least 2 classes")
        split = np.random.default_rng(0 if seed is None else seed).permutation(len(labels))
        self.fit, self.test = split[: len(labels) // 2], split[len(labels) // 2 :]
        self.labels = labels
        if len(np.unique(labels[self.fit])) < 2:
            raise ValueError("expected at least 2 classes among the classifiers' training half of eval_labels")
        self.pixel_classifier = LogisticRegression(max_iter=1000)
        self.pixel_classifier.fit(eval_images[self.fit].reshape(len(self.fit), -1).cpu().numpy(), labels[self.fit])
        self.neighbours = min(knn_neighbors, len(self.fit))
        self.num_samples = num_samples

    def scores(self, model, means: Mapping[str, np.ndarray], site_names: Sequence[str]) -> dict[str, float]:
        fit, test, labels = self.fit, self.test, self.labels
        row = {}
        for kind, build in _classifiers(self.neighbours).items():
            for name in site_names:
                classifier = build().fit(means[name][fit], labels[fit])
                row[f"{kind}/{name}"] = float(classifier.score(means[name][test], labels[test]))
        with torch.no_grad():
            samples = model.sample(self.num_samples).reshape(self.num_samples, -1).cpu().numpy()
        row["inception_score"] = inception_score(self.pixel_classifier.predict_proba(samples))
        return row


def _measure_setting(make_model, betas: Mapping[str, float], site_names: Sequence[str], data: torch.Tensor,
                     eval_images: torch.Tensor, uses: _Uses | None, *, steps: int, batch_size: int, lr: float,
                     analytic_kl: bool, eval_batch_size: int, seed: int | None) -> dict[str, float]:
    """Trains a fresh model with the weights ``betas`` and measures it: one row of the table."""
    if seed is not None:
        pyro.set_rng_seed(seed)
    model = make_model()
    device = next(model.parameters()).device
    loss = HITLoss(betas, analytic_kl=analytic_kl)
    start = time.perf_counter()
    model.train(True)
    curve = _train(model, data, loss, steps, batch_size, lr, device)
    seconds = time.perf_counter() - start
    model.train(False)
    results, means = _evaluate(model, eval_images, loss, eval_batch_size, device)
    row = {f"beta/{name}": betas.get(name, loss.default_beta) for name in site_names}
    row.update({f"rate/{name}": results[f"rate/{name}"] for name in site_names})
    row.update({key: results[key] for key in ("rate", "distortion", "elbo", "psnr")})
    if uses is not None:
        row.update(uses.scores(model, means, site_names))
    row["train_loss"] = curve[-1]
    row.update({f"train_loss/{part}": value for part, value in enumerate(curve, 1)})
    row["seconds"] = seconds
    return row


def rate_grid(
    make_model: Callable[[], torch.nn.Module],
    data: torch.Tensor,
    betas_grid: Iterable[Mapping[str, float] | Sequence[float]] | None = None,
    *,
    eval_data: torch.Tensor | None = None,
    eval_labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    steps: int = 1000,
    batch_size: int = 128,
    lr: float = 1e-3,
    num_betas: int = 5,
    beta_range: tuple[float, float] = (0.1, 10.0),
    analytic_kl: bool = True,
    num_samples: int = 1000,
    knn_neighbors: int = 5,
    eval_batch_size: int = 500,
    seed: int | None = 0,
) -> list[dict[str, float]]:
    r"""
    Trains one model per setting of the per-site weights with :class:`~pyro_hfvae.HITLoss`
    and tabulates rates, distortion and the three uses of Xiao and Bamler (2023).

    ``make_model()`` must return a fresh :class:`torch.nn.Module` that is a
    :class:`~pyro_hfvae.models.ModelProtocol` (any of the library's models) with images in
    ``[0, 1]``. Each setting clears Pyro's param store and trains its model with
    :class:`pyro.infer.SVI` and :class:`pyro.optim.Adam` for ``steps`` steps over shuffled
    minibatches of ``data`` (a new permutation whenever one is used up). Then, on
    ``eval_data`` (default: ``data``), each row of the table holds:

    - ``beta/<site>``: the weights; ``rate/<site>``, ``rate``, ``distortion`` and ``elbo``:
      :class:`~pyro_hfvae.HITLoss` terms in nats per image (one posterior sample, analytic
      KL where torch has it);
    - ``psnr``: :math:`10 \log_{10}(1 / \mathrm{MSE})` of ``reconstruct`` against the images
      (reconstruction);
    - with ``eval_labels``: ``logistic/<site>``, ``svm_linear/<site>``, ``svm_rbf/<site>`` and
      ``knn/<site>``, the test accuracy of the paper's four classifiers on the site's posterior
      means: a logistic regression and support vector machines with a linear and an RBF kernel
      (each on standardised means) and a ``knn_neighbors``-nearest-neighbour classifier, fitted
      on a fixed random half of the evaluation images and tested on the other half
      (representation); and
      ``inception_score`` (:func:`inception_score`) of ``num_samples`` generated images under
      a logistic regression on pixels fitted to the same half of the real images
      (generation). The pixel classifier is much weaker than the paper's ResNet, so this
      score sees class identity and sharpness only coarsely;
    - ``train_loss`` (the loss per image over the last tenth of the steps), the loss curve
      ``train_loss/1`` ... ``train_loss/10`` (the mean over each tenth, to judge convergence) and
      ``seconds`` (training time).

    :param make_model: builds a fresh model (called once per setting, plus once for the names).
    :param torch.Tensor data: training images ``(N, C, H, W)``, on any device (batches move
        to the model's device).
    :param betas_grid: settings: dicts site -> weight, or sequences with one weight per
        latent site in the order of ``model.site_names`` (else of the guide's trace). Default:
        :func:`default_betas_grid` with ``num_betas`` and ``beta_range``.
    :param torch.Tensor eval_data: evaluation images (default ``data``).
    :param eval_labels: integer class labels of the evaluation images.
    :param int steps: optimisation steps per setting.
    :param int batch_size: minibatch size (at most the data size).
    :param float lr: Adam learning rate.
    :param int num_betas: weights per site of the default grid.
    :param beta_range: range of the default grid.
    :param bool analytic_kl: passed to :class:`~pyro_hfvae.HITLoss`.
    :param int num_samples: generated images for the inception score.
    :param int knn_neighbors: neighbours of the kNN classifier.
    :param int eval_batch_size: batch size of the evaluation passes.
    :param int seed: seeds Pyro's and torch's global RNGs before each setting, so that every
        setting starts from the same initialisation and a setting's row does not depend on the
        others in the grid (on a CPU it is the same bit for bit); ``None`` leaves them alone.
    :returns: one dict per setting.
    :rtype: list

    Example::

        >>> import torch
        >>> from pyro_hfvae.models import HierarchicalVAE
        >>> data = torch.rand(16, 1, 8, 8).round()
        >>> make_model = lambda: HierarchicalVAE((1, 8, 8), (2, 2), channels=(2,), hidden_dim=8)
        >>> rows = rate_grid(make_model, data,
        ...                  [(1.0, 1.0), (0.5, 4.0)], steps=2, batch_size=8)
        >>> [round(row["beta/z2"], 1) for row in rows], sorted(rows[0])[:4]
        ([1.0, 4.0], ['beta/z1', 'beta/z2', 'distortion', 'elbo'])

    References

    [1] Trading Information between Latents in Hierarchical Variational Autoencoders,
        Tim Z. Xiao, Robert Bamler (ICLR 2023)
    [2] Improved Techniques for Training GANs,
        Tim Salimans, Ian Goodfellow, Wojciech Zaremba, Vicki Cheung, Alec Radford, Xi Chen
        (NeurIPS 2016)
    """
    _check_arguments(data, steps, batch_size, eval_batch_size, num_samples, knn_neighbors)
    eval_images = data if eval_data is None else eval_data
    uses = None if eval_labels is None else _Uses(eval_images, eval_labels, knn_neighbors, num_samples, seed)
    batch_size = min(batch_size, data.shape[0])

    if seed is not None:
        pyro.set_rng_seed(seed)
    site_names = _site_names(make_model(), data[:2])
    settings = [
        _as_betas(s, site_names)
        for s in (default_betas_grid(site_names, num_betas, beta_range) if betas_grid is None else betas_grid)
    ]
    rows = []
    for number, betas in enumerate(settings):
        row = _measure_setting(make_model, betas, site_names, data, eval_images, uses, steps=steps,
                               batch_size=batch_size, lr=lr, analytic_kl=analytic_kl,
                               eval_batch_size=eval_batch_size, seed=seed)
        logger.info("rate_grid %d/%d %s", number + 1, len(settings), ", ".join(f"{k}={v:.4g}" for k, v in row.items()))
        rows.append(row)
    return rows
