# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
How the information :math:`I(x; z_l)` of every latent level flows during progressive
training: per-stage estimates, their table (pro-VLAE Tables 3-8) and bar chart (Fig. 5).
"""

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.distributions import Distribution

from pyro_hfvae._format import format_mean_sd
from pyro_hfvae.infer.progressive import ProgressiveSchedule
from pyro_hfvae.metrics.information import mutual_information
from pyro_hfvae.ops.mixture import check_memory_budget
from pyro_hfvae.plots._figure import save_figure

logger = logging.getLogger(__name__)

__all__ = [
    "InformationFlow",
    "InformationRecord",
    "information_table",
    "plot_information_flow",
]

_ACTIVE_GROUP = "active levels"


@dataclasses.dataclass(frozen=True)
class InformationRecord:
    """
    The information of every level at the end of one stage, in nats.

    :ivar int stage: the stage (0: only the top level).
    :ivar int iteration: the training iteration at which it was measured.
    :ivar tuple active: the levels in use at that stage, top first.
    :ivar dict levels: level -> :math:`I(x; z_l)`, every level (also those not yet added).
    :ivar float total: :math:`I(x; z)` of the active levels jointly.
    """

    stage: int
    iteration: int
    active: tuple[str, ...]
    levels: dict[str, float]
    total: float


class InformationFlow:
    r"""
    Tracks :math:`I(x; z_l)` of every latent level at the end of every progressive stage.

    Each measurement calls :func:`~pyro_hfvae.metrics.mutual_information` on the whole
    ``data`` (the exact aggregate posterior :math:`\frac1N \sum_m q(z_l \mid x_m)`, batched
    within ``pairwise_memory_mb``), so every value is at most :math:`\log N`. ``total`` is
    :math:`I(x; z)` of the active levels jointly, as in the paper's tables. For a posterior
    that factorises over the levels (a VLAE's), the sum over levels exceeds it by the total
    correlation between the levels in the aggregate posterior (the paper's :math:`I_{over}`).

    Call the object with the schedule after every :meth:`ProgressiveSchedule.step
    <pyro_hfvae.infer.progressive.ProgressiveSchedule.step>`; it measures when a stage
    has just been completed. :meth:`record` measures at any other time.

    :param callable posterior: ``x_batch -> {level: Distribution}``, each with batch shape
        ``(len(x_batch),)``, top level first (e.g. :meth:`VLAE.posterior
        <pyro_hfvae.models.vlae.VLAE.posterior>`, which has every level at full fade-in, as
        the authors measure). Called under ``torch.no_grad()``.
    :param data: the data set the information is measured on: a tensor (split into
        ``batch_size`` rows), or a re-iterable of batches such as a DataLoader.
    :type data: torch.Tensor or Iterable
    :param int num_samples: score this many random samples :math:`z_s \sim q(z \mid x_s)`
        (default: one per data point); the mixture is always over all of ``data``.
    :param int random_state: seed of the samples (the same for every measurement).
    :param int batch_size: rows per posterior call when ``data`` is a tensor.
    :param float pairwise_memory_mb: bound on the pairwise log densities held at once.

    Example::

        >>> import pyro.distributions as dist
        >>> data = torch.arange(8.0).repeat_interleave(2).reshape(16, 1)   # 8 distinct points
        >>> posterior = lambda x: {"z2": dist.Normal(x // 4, 1e-3).to_event(1),   # 2 classes
        ...                        "z1": dist.Normal(x, 1e-3).to_event(1)}       # 8 classes
        >>> flow = InformationFlow(posterior, data)
        >>> schedule = ProgressiveSchedule(["z2", "z1"], steps_per_level=3)
        >>> for _ in range(6):
        ...     schedule.step()
        ...     _ = flow(schedule)
        >>> print(flow.table())
        | stage | I(x;z2) | I(x;z1) | total |
        |---|---|---|---|
        | 0 | 0.69 |  | 0.69 |
        | 1 | 0.69 | 2.08 | 2.08 |
    """

    def __init__(
        self,
        posterior: Callable[[torch.Tensor], Mapping[str, Distribution]],
        data: torch.Tensor | Iterable,
        *,
        num_samples: int | None = None,
        random_state: int = 0,
        batch_size: int = 1024,
        pairwise_memory_mb: float = 1024.0,
    ) -> None:
        if not callable(posterior):
            raise TypeError(
                f"expected posterior to be a callable x_batch -> {{level: Distribution}} but got "
                f"{type(posterior).__name__}; pass e.g. vlae.posterior"
            )
        if not isinstance(data, (torch.Tensor, np.ndarray)):
            if not isinstance(data, Iterable):
                raise TypeError(f"expected data to be a tensor or an iterable of batches but got {type(data).__name__}")
            if iter(data) is data:
                raise TypeError(
                    "expected data that can be iterated over once per measurement but got a "
                    f"one-shot iterator ({type(data).__name__}); pass a tensor, a list of batches "
                    "or a DataLoader"
                )
        self.posterior = posterior
        self.data = data
        self.num_samples = num_samples
        self.random_state = random_state
        self.batch_size = batch_size
        self.pairwise_memory_mb = check_memory_budget(pairwise_memory_mb)
        #: The measurements so far, in order.
        self.records: list[InformationRecord] = []

    def record(self, stage: int, iteration: int, active: Sequence[str]) -> InformationRecord:
        """
        Measures :math:`I(x; z_l)` for every level now and appends it to :attr:`records`.

        :param int stage: the stage to file it under.
        :param int iteration: the training iteration.
        :param active: the levels in use (their joint information is ``total``).
        :type active: list of str
        :rtype: InformationRecord
        """
        active = tuple(active)
        estimate = mutual_information(
            self.posterior,
            self.data,
            groups={_ACTIVE_GROUP: list(active)},
            num_samples=self.num_samples,
            random_state=self.random_state,
            batch_size=self.batch_size,
            pairwise_memory_mb=self.pairwise_memory_mb,
        )
        record = InformationRecord(
            stage=int(stage),
            iteration=int(iteration),
            active=active,
            levels=dict(estimate.sites),
            total=estimate.groups[_ACTIVE_GROUP],
        )
        if self.records and list(record.levels) != list(self.records[0].levels):
            raise ValueError(
                f"expected the posterior to return the same levels at every measurement, "
                f"{list(self.records[0].levels)}, but got {list(record.levels)}"
            )
        logger.info(
            "stage %d (iteration %d): %s, total %.3f",
            record.stage,
            record.iteration,
            ", ".join(f"I(x;{k})={v:.3f}" for k, v in record.levels.items()),
            record.total,
        )
        self.records.append(record)
        return record

    def __call__(self, schedule: ProgressiveSchedule) -> InformationRecord | None:
        """
        Measures if the schedule's last step completed a stage.

        :param ~pyro_hfvae.infer.progressive.ProgressiveSchedule schedule: the schedule,
            just stepped.
        :returns: the new record, or ``None`` if no stage was completed.
        """
        stage = schedule.completed_stage
        if stage is None:
            return None
        return self.record(stage, schedule.iteration, schedule.levels[: stage + 1])

    def table(self, digits: int = 2) -> str:
        """
        :param int digits: decimals shown.
        :returns: the records as a Markdown table (see :func:`information_table`).
        :rtype: str
        """
        return information_table([self.records], digits=digits)

    def plot(self, path: str | os.PathLike | None = None) -> Figure:
        """
        :param path: where to save the figure (format from the suffix), or ``None``.
        :returns: the bar chart of :func:`plot_information_flow`.
        :rtype: matplotlib.figure.Figure
        """
        return plot_information_flow([self.records], path=path)

    def state_dict(self) -> dict[str, Any]:
        """
        :returns: the records as plain Python values, for checkpoints.
        :rtype: dict
        """
        return {"records": [dataclasses.asdict(record) for record in self.records]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """
        Restores the records of :meth:`state_dict`.

        :param dict state: a dict returned by :meth:`state_dict`.
        """
        if not isinstance(state, Mapping) or "records" not in state:
            raise ValueError("expected a dict with key 'records', as InformationFlow.state_dict() returns")
        self.records = [
            InformationRecord(
                stage=int(r["stage"]),
                iteration=int(r["iteration"]),
                active=tuple(r["active"]),
                levels={k: float(v) for k, v in r["levels"].items()},
                total=float(r["total"]),
            )
            for r in state["records"]
        ]


def _by_stage(
    runs: Sequence[Sequence[InformationRecord]],
) -> tuple[list[str], dict[int, list[InformationRecord]]]:
    if not runs or not any(runs):
        raise ValueError("expected at least one run with at least one record but got none; train and record first")
    levels = list(next(run for run in runs if run)[0].levels)
    stages: dict[int, list[InformationRecord]] = {}
    for run in runs:
        for record in run:
            if list(record.levels) != levels:
                raise ValueError(f"expected every record over the levels {levels} but got {list(record.levels)}")
            stages.setdefault(record.stage, []).append(record)
    for stage, records in stages.items():
        if len({r.active for r in records}) > 1:
            raise ValueError(
                f"expected the same active levels in every run at stage {stage} but got "
                f"{sorted({r.active for r in records})}"
            )
    return levels, dict(sorted(stages.items()))


def information_table(runs: Sequence[Sequence[InformationRecord]], digits: int = 2) -> str:
    r"""
    The information per level and stage as a Markdown table laid out like pro-VLAE's
    Tables 3-8: rows are stages; columns :math:`I(x; z_L), \dots, I(x; z_1)` and the total
    :math:`I(x; z)` of the active levels; levels not yet added are left blank. Over several
    runs each cell is ``mean ± std`` (sample standard deviation).

    :param runs: one list of records per run (e.g. ``[flow.records for flow in flows]``).
    :type runs: list of list of InformationRecord
    :param int digits: decimals shown.
    :rtype: str

    Example::

        >>> record = InformationRecord(0, 100, ("z2",), {"z2": 3.0, "z1": 0.01}, 3.0)
        >>> print(information_table([[record]]))
        | stage | I(x;z2) | I(x;z1) | total |
        |---|---|---|---|
        | 0 | 3.00 |  | 3.00 |
    """
    levels, stages = _by_stage(runs)
    lines = [
        "| stage | " + " | ".join(f"I(x;{level})" for level in levels) + " | total |",
        "|" + "---|" * (len(levels) + 2),
    ]
    for stage, records in stages.items():
        active = records[0].active
        cells = [
            format_mean_sd([r.levels[level] for r in records], digits) if level in active else "" for level in levels
        ]
        total = format_mean_sd([r.total for r in records], digits)
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {total} |")
    return "\n".join(lines)


def plot_information_flow(runs: Sequence[Sequence[InformationRecord]], path: str | os.PathLike | None = None) -> Figure:
    r"""
    Bar chart of the information flow in the style of pro-VLAE's Fig. 5: one panel per
    stage, one horizontal bar per level (top level first) of length :math:`I(x; z_l)`, the
    levels not yet added drawn pale, and the total :math:`I(x; z)` in the panel's title.
    Over several runs the bars show the mean and the error bars the standard deviation.

    Uses :class:`matplotlib.figure.Figure` directly (no pyplot state, any backend).

    :param runs: one list of records per run.
    :type runs: list of list of InformationRecord
    :param path: where to save the figure (format from the suffix), written atomically.
    :returns: the figure.
    :rtype: matplotlib.figure.Figure
    """
    levels, stages = _by_stage(runs)
    figure = Figure(figsize=(2.6 * len(stages) + 0.6, 0.45 * len(levels) + 1.4))
    axes = figure.subplots(1, len(stages), sharex=True, squeeze=False)[0]
    limit = max(max(r.levels.values()) for records in stages.values() for r in records)
    limit = max(limit, max(r.total for records in stages.values() for r in records))
    positions = np.arange(len(levels))
    for ax, (stage, records) in zip(axes, stages.items()):
        values = np.array([[r.levels[level] for level in levels] for r in records])
        spread = values.std(0, ddof=1) if len(records) > 1 else None
        active = records[0].active
        colors = ["tab:green" if level in active else "0.8" for level in levels]
        ax.barh(positions, values.mean(0), xerr=spread, color=colors, capsize=3)
        ax.set_yticks(positions, [f"I(x;{level})" for level in levels])
        ax.invert_yaxis()
        totals = [r.total for r in records]
        ax.set_title(f"stage {stage}: I(x;z) = {np.mean(totals):.2f}", fontsize=9)
        ax.set_xlim(0, 1.05 * limit if limit > 0 else 1)
        ax.set_xlabel("nats")
    figure.tight_layout()
    save_figure(figure, path)
    return figure
