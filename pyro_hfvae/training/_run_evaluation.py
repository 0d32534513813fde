# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Evaluating the model of a run under an evaluation preset (a value of
:data:`pyro_hfvae.training.trainer.EVALUATION_PRESETS`) and its ``[evaluation]`` settings: the
disentanglement metrics, the mutual information I(x; z) and, with a ``[data] hold_out``, the
fit to the held-out factor combinations that
:meth:`Trainer.evaluate <pyro_hfvae.training.trainer.Trainer.evaluate>` reports (private: used by
:class:`~pyro_hfvae.training.trainer.Trainer`).
"""
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pyro_hfvae.training._run_components import _model_kwargs

if TYPE_CHECKING:
    from pyro_hfvae.training.trainer import Trainer

logger = logging.getLogger(__name__)

# Metrics that compare factors with each other, meaningless with a single factor.
_MULTI_FACTOR_METRICS = {"mig_sup", "modularity", "factor_vae", "beta_vae"}


def _evaluation(trainer: "Trainer", preset: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """
    The result of :meth:`Trainer.evaluate <pyro_hfvae.training.trainer.Trainer.evaluate>` for the
    preset ``preset``, whose settings (its value of ``EVALUATION_PRESETS``) are ``settings``; read in
    the trainer's :meth:`~pyro_hfvae.training.trainer.Trainer.evaluation_mode`, so that the run's
    course is left as it was.
    """
    evaluation = trainer.config["evaluation"]
    started = time.perf_counter()
    with trainer.evaluation_mode():
        metrics = _disentanglement_metrics(trainer.dataset, trainer.encode, evaluation, settings, preset)
        information = _information_summary(trainer.posterior, trainer._information_data(), trainer.site_groups,
                                           evaluation["seed"])
        hold_out = _hold_out_summary(trainer.dataset, trainer.model, _model_kwargs(trainer), trainer.device,
                                     evaluation["information_points"] or settings["information_points"],
                                     evaluation["seed"])
    result = {
        "step": trainer.step_count,
        "preset": preset,
        "seconds": time.perf_counter() - started,
        "metrics": metrics,
        "information": information,
    }
    if hold_out is not None:
        result["hold_out"] = hold_out
    return result


def _disentanglement_metrics(dataset, encode: Callable[[torch.Tensor], torch.Tensor], evaluation: Mapping[str, Any],
                             settings: Mapping[str, Any], preset: str) -> dict[str, float]:
    """
    The metrics of :func:`pyro_hfvae.metrics.evaluate` that ``dataset``'s factors allow (none
    without factors), from ``[evaluation]`` settings other than 0 / empty, else the preset's.
    """
    from pyro_hfvae.metrics import evaluate as evaluate_metrics

    names = list(evaluation["metrics"] or settings["metrics"])
    factors = getattr(dataset, "factor_sizes", ())
    if len(factors) < 2:
        names = [n for n in names if n not in _MULTI_FACTOR_METRICS]
    if not (names and factors):
        return {}
    options = {k: v for k, v in settings["options"].items() if k in names}
    logger.info("evaluating %s (%s preset)", ", ".join(names), preset)
    return evaluate_metrics(dataset, encode, metrics=names, random_state=evaluation["seed"],
                            num_train=evaluation["num_train"] or settings["num_train"],
                            num_test=evaluation["num_test"] or settings["num_test"], options=options)


def _information_positions(evaluation: Mapping[str, Any], settings: Mapping[str, Any],
                           dataset_size: int) -> np.ndarray:
    """
    Positions of the training items on which I(x; z) is measured: a fixed random choice of
    ``[evaluation] information_points`` (else the preset's) items, sorted.

    Example::

        >>> len(_information_positions({"information_points": 3, "seed": 0}, {}, 10))
        3
        >>> _information_positions({"information_points": 0, "seed": 0}, {"information_points": 2000}, 5).tolist()
        [0, 1, 2, 3, 4]
    """
    count = min(evaluation["information_points"] or settings["information_points"], dataset_size)
    return np.sort(np.random.RandomState(evaluation["seed"]).choice(dataset_size, count, replace=False))


def _information_summary(posterior: Callable[[torch.Tensor], dict], data: torch.Tensor,
                         site_groups: Mapping[str, str | None], seed: int) -> dict[str, Any]:
    """
    I(x; z) of every latent variable, site and group over ``data``
    (:func:`pyro_hfvae.metrics.information.mutual_information`), as JSON values. Group paths
    keep their nesting (``"style/pose"`` is a sub-group of ``"style"``, as in the loss); a
    site without a group counts as a group of its own.
    """
    from pyro_hfvae.metrics.information import mutual_information

    groups: dict[str, list[str]] = {}
    for site, group in site_groups.items():
        if group is not None:
            groups.setdefault(group, []).append(site)
    information = mutual_information(posterior, data, groups=groups, random_state=seed, batch_size=512)
    return {
        "total": information.total,
        "groups": information.groups,
        "sites": information.sites,
        "variables": {k: np.asarray(v).reshape(-1).tolist() for k, v in information.variables.items()},
        "num_data": information.num_data,
    }


def _hold_out_summary(dataset, model, model_kwargs: Mapping[str, Any], device: torch.device, num_items: int,
                      seed: int) -> dict[str, dict[str, float]] | None:
    """
    How the model does on the held-out factor combinations against held-in items that share
    part of them (``dataset.held_out_neighbour_indices()``): per group of at most ``num_items``
    items (a fixed random choice), the mean ELBO per item (one sample; :class:`~pyro_hfvae.HITLoss`
    with every weight 1, which is :class:`~pyro.infer.Trace_ELBO`'s value but scores a Concrete at
    its sample's exact logarithm, where ``Trace_ELBO``'s relaxed density of a confident posterior's
    underflowed sample is NaN) and the mean squared error of the reconstruction, summed over an
    item's pixels. ``None`` without a hold-out.
    """
    from pyro_hfvae.infer.hit import HITLoss

    held_out = dataset.held_out_indices() if hasattr(dataset, "held_out_indices") else ()
    if not len(held_out):
        return None
    random_state = np.random.RandomState(seed)
    elbo_loss = HITLoss(analytic_kl=False)
    summary = {}
    for name, indices in (("held_out", held_out), ("held_in_neighbours", dataset.held_out_neighbour_indices())):
        chosen = np.sort(random_state.choice(indices, min(num_items, len(indices)), replace=False))
        elbo, squared_error = 0.0, 0.0
        for batch in np.array_split(chosen, -(-len(chosen) // 256)):
            x = dataset.observations(torch.from_numpy(batch).to(device))
            elbo -= elbo_loss.loss(model.model, model.guide, x, **model_kwargs)
            squared_error += float((model.reconstruct(x) - x).pow(2).sum())
        summary[name] = {"items": len(chosen), "elbo": elbo / len(chosen),
                         "reconstruction_error": squared_error / len(chosen)}
    return summary


def _evaluation_record(result: Mapping[str, Any]) -> dict[str, Any]:
    """
    The flat record of an evaluation's result for ``evaluations.jsonl``.

    Example::

        >>> result = {"step": 5, "metrics": {"mig": 0.25},
        ...           "information": {"total": 1.5, "groups": {"style": 1.0}}}
        >>> _evaluation_record(result)
        {'step': 5, 'mig': 0.25, 'information_total': 1.5, 'information/style': 1.0}
    """
    flat = {"step": result["step"], **result["metrics"], "information_total": result["information"]["total"]}
    flat.update({f"information/{k}": v for k, v in result["information"]["groups"].items()})
    for part, values in (result.get("hold_out") or {}).items():
        flat.update({f"hold_out/{part}/{k}": v for k, v in values.items() if k != "items"})
    return flat
