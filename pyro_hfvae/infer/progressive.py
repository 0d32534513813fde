# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Progressive growth of a ladder model: latent levels are added top to bottom, each one
faded in, with a weak "pre-KL" penalty on the levels not yet added (pro-VLAE).
"""

import logging
import math
import numbers
from typing import Any, Sequence

logger = logging.getLogger(__name__)

__all__ = [
    "ProgressiveSchedule",
]


def _check_nonnegative_float(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"expected {name} to be a finite number >= 0 but got {value!r}")
    return float(value)


def _check_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"expected {name} to be an int >= {minimum} but got {value!r}")
    return int(value)


class ProgressiveSchedule:
    r"""
    The schedule of progressive training (pro-VLAE): which latent levels are active, how
    far each new level is faded in, and the per-site KL weights, at every iteration.

    Levels are given top (most abstract, added first) to bottom. Stage ``s`` (0-based)
    spans ``steps_per_level[s]`` iterations; during it the levels ``levels[:s + 1]`` are
    active. After the last stage's steps training may go on: the stage stays at the last.
    At stage ``s`` the objective is

    .. math::

        \mathbb{E}_q[\log p(x \mid z)]
        - \beta \sum_{l \text{ active}} \mathrm{KL}(q(z_l \mid x) \,\|\, p(z_l))
        - \gamma \sum_{l \text{ not yet added}} \mathrm{KL}(q(z_l \mid x) \,\|\, p(z_l))

    with the "pre-KL" weight :math:`\gamma` (``pre_kl``); :meth:`betas` returns these
    weights per site, in the form :class:`~pyro_hfvae.HITLoss` reads at every step.

    **Fade-in.** :meth:`fade_in` is the coefficient :math:`\alpha` of the paper's Eq. (9):
    0 before the level's stage; from the first iteration of its stage it rises linearly,
    :math:`\alpha = (t - t_s) / T` for :math:`t_s \le t \le t_s + T` (``T = fade_in_steps``),
    so it is exactly 0 at the stage's first iteration and reaches 1 at ``t_s + T``; then 1.
    The first level is never faded in: it is 1 from iteration 0, since at stage 0 it is
    the whole model and there is nothing to blend it into (Eq. (9) applies to components
    grown onto a trained network). Both follow the authors' code, where the iteration
    counter restarts at 0 with each progressive step, ``alpha = iter / fade_in_duration``
    (1 beyond), and only the levels added after the first are multiplied by it. With
    ``fade_in=False`` an active level's coefficient is 1 from the first iteration of its
    stage (the ablation's "no fade-in").

    The counter :attr:`iteration` is the number of :meth:`step` calls so far: query the
    schedule for iteration ``t``, train, then call :meth:`step`.

    :param levels: latent site names, top level first (e.g. ``["z3", "z2", "z1"]``).
    :type levels: list of str
    :param steps_per_level: iterations of each stage: one int for all, or one per level.
    :type steps_per_level: int or list of int
    :param int fade_in_steps: iterations over which a new level's :math:`\alpha` rises
        from 0 to 1 (5,000 in the paper); 0 adds it at once.
    :param float pre_kl: :math:`\gamma`, the KL weight of levels not yet added (0.5 in the
        paper; 0.1 on CelebA).
    :param float beta: KL weight of the active levels.
    :param bool fade_in: whether new levels fade in (``False``: :math:`\alpha` jumps to 1).
    :param bool use_pre_kl: whether levels not yet added get the pre-KL weight
        (``False``: weight 0, so they are unconstrained until added).

    Example::

        >>> schedule = ProgressiveSchedule(["z3", "z2", "z1"], steps_per_level=10, fade_in_steps=4)
        >>> for _ in range(12):
        ...     schedule.step()
        >>> schedule.stage, schedule.active, schedule.fade_in("z2"), schedule.fade_in("z1")
        (1, ('z3', 'z2'), 0.5, 0.0)
        >>> schedule.betas()
        {'z3': 1.0, 'z2': 1.0, 'z1': 0.5}

    References

    [1] Progressive Learning and Disentanglement of Hierarchical Representations,
        Zhiyuan Li, Jaideep Vitthal Murkute, Prashnna Kumar Gyawali, Linwei Wang (ICLR 2020)
    """

    def __init__(
        self,
        levels: Sequence[str],
        steps_per_level: int | Sequence[int],
        fade_in_steps: int = 5000,
        pre_kl: float = 0.5,
        beta: float = 1.0,
        fade_in: bool = True,
        use_pre_kl: bool = True,
    ) -> None:
        if isinstance(levels, str) or not isinstance(levels, Sequence) or not levels:
            raise ValueError(f"expected levels to be a non-empty list of site names, top first, but got {levels!r}")
        levels = tuple(levels)
        if not all(isinstance(name, str) and name for name in levels):
            raise ValueError(f"expected every level to be a non-empty site name (str) but got {list(levels)}")
        if len(set(levels)) != len(levels):
            raise ValueError(f"expected distinct level names but got {list(levels)}; name every level once")
        if isinstance(steps_per_level, Sequence):
            steps = tuple(steps_per_level)
            if len(steps) != len(levels):
                raise ValueError(
                    f"expected one steps_per_level entry per level ({len(levels)}) but got "
                    f"{len(steps)}; pass one int for all levels or a list as long as levels"
                )
        else:
            steps = (steps_per_level,) * len(levels)
        steps = tuple(_check_int(value, f"steps_per_level[{s}]", 1) for s, value in enumerate(steps))
        self.levels: tuple[str, ...] = levels
        self.steps_per_level: tuple[int, ...] = steps
        self.fade_in_steps: int = _check_int(fade_in_steps, "fade_in_steps", 0)
        self.pre_kl: float = _check_nonnegative_float(pre_kl, "pre_kl")
        self.beta: float = _check_nonnegative_float(beta, "beta")
        if not isinstance(fade_in, bool) or not isinstance(use_pre_kl, bool):
            raise ValueError(f"expected fade_in and use_pre_kl to be bools but got {fade_in!r} and {use_pre_kl!r}")
        self.use_fade_in: bool = fade_in
        self.use_pre_kl: bool = use_pre_kl
        starts = [0]
        for value in steps[:-1]:
            starts.append(starts[-1] + value)
        self._starts: tuple[int, ...] = tuple(starts)
        self._iteration = 0

    @property
    def iteration(self) -> int:
        """The number of :meth:`step` calls so far (the current iteration, 0-based)."""
        return self._iteration

    @property
    def num_stages(self) -> int:
        """The number of stages (one per level)."""
        return len(self.levels)

    @property
    def total_steps(self) -> int:
        """Iterations until the last stage's steps are done: ``sum(steps_per_level)``."""
        return sum(self.steps_per_level)

    def stage_start(self, stage: int) -> int:
        """
        :param int stage: a stage index, ``0 <= stage < num_stages``.
        :returns: the iteration at which ``stage`` begins.
        :rtype: int
        """
        self._check_stage(stage)
        return self._starts[stage]

    def stage_end(self, stage: int) -> int:
        """
        :param int stage: a stage index, ``0 <= stage < num_stages``.
        :returns: the iteration at which ``stage``'s steps are done (the next stage's start).
        :rtype: int
        """
        self._check_stage(stage)
        return self._starts[stage] + self.steps_per_level[stage]

    def _check_stage(self, stage: int) -> None:
        if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < self.num_stages:
            raise ValueError(f"expected a stage index in [0, {self.num_stages}) but got {stage!r}")

    @property
    def stage(self) -> int:
        """The current stage: the number of levels added after the first (0-based)."""
        stage = 0
        while stage + 1 < self.num_stages and self._iteration >= self._starts[stage + 1]:
            stage += 1
        return stage

    @property
    def completed_stage(self) -> int | None:
        """
        The stage whose steps the last :meth:`step` completed, or ``None``: the moment to
        record per-stage statistics (see :class:`~pyro_hfvae.metrics.information_flow.InformationFlow`).
        """
        for stage in range(self.num_stages):
            if self._iteration == self.stage_end(stage):
                return stage
        return None

    @property
    def active(self) -> tuple[str, ...]:
        """The levels used by the model at the current stage, top first."""
        return self.levels[: self.stage + 1]

    @property
    def inactive(self) -> tuple[str, ...]:
        """The levels not yet added, top first."""
        return self.levels[self.stage + 1 :]

    def _level_index(self, site: str) -> int:
        try:
            return self.levels.index(site)
        except ValueError:
            raise ValueError(f"expected one of the levels {list(self.levels)} but got site {site!r}") from None

    def fade_in(self, site: str) -> float:
        r"""
        The fade-in coefficient :math:`\alpha \in [0, 1]` of ``site`` at the current iteration.

        :param str site: a level's site name.
        :rtype: float
        """
        index = self._level_index(site)
        if index > self.stage:
            return 0.0
        if index == 0 or not self.use_fade_in or self.fade_in_steps == 0:
            return 1.0
        return min(1.0, (self._iteration - self._starts[index]) / self.fade_in_steps)

    def betas(self) -> dict[str, float]:
        """
        The KL weight of every level at the current iteration: ``beta`` for the active
        levels, ``pre_kl`` for those not yet added (0 when ``use_pre_kl`` is off).

        :rtype: dict
        """
        stage = self.stage
        inactive_weight = self.pre_kl if self.use_pre_kl else 0.0
        return {site: self.beta if i <= stage else inactive_weight for i, site in enumerate(self.levels)}

    def step(self) -> None:
        """Advances the schedule by one iteration."""
        self._iteration += 1
        completed = self.completed_stage
        if completed is not None:
            logger.debug("progressive stage %d done at iteration %d", completed, self._iteration)

    def config(self) -> dict[str, Any]:
        """
        The schedule's settings (everything but the iteration counter).

        :rtype: dict
        """
        return {
            "levels": list(self.levels),
            "steps_per_level": list(self.steps_per_level),
            "fade_in_steps": self.fade_in_steps,
            "pre_kl": self.pre_kl,
            "beta": self.beta,
            "fade_in": self.use_fade_in,
            "use_pre_kl": self.use_pre_kl,
        }

    def state_dict(self) -> dict[str, Any]:
        """
        A checkpointable state: the settings and the iteration counter (plain Python
        values, so :func:`torch.save`, JSON and pickle all work).

        :rtype: dict
        """
        return {"iteration": self._iteration, "config": self.config()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """
        Restores the iteration counter from :meth:`state_dict`, after checking that the
        state was saved by a schedule with the same settings.

        :param dict state: a dict returned by :meth:`state_dict`.
        :raises ValueError: if the state is malformed or its settings differ from this
            schedule's.
        """
        if not isinstance(state, dict) or set(state) != {"iteration", "config"}:
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                "expected a ProgressiveSchedule state dict with keys ['config', 'iteration'] but "
                f"got {keys}; pass what ProgressiveSchedule.state_dict() returned"
            )
        config = self.config()
        saved = state["config"]
        if not isinstance(saved, dict):
            raise ValueError(f"expected state['config'] to be a dict but got {type(saved).__name__}")
        differences = [
            f"{key}: saved {saved.get(key, '<missing>')!r}, this schedule {value!r}"
            for key, value in config.items()
            if saved.get(key, "<missing>") != value
        ]
        differences += [f"{key}: unexpected in the saved state" for key in saved if key not in config]
        if differences:
            raise ValueError(
                "expected a state saved by a schedule with the same settings but they differ ("
                + "; ".join(differences)
                + "); construct the schedule with the saved settings, "
                "ProgressiveSchedule(**state['config'])"
            )
        self._iteration = _check_int(state["iteration"], "state['iteration']", 0)

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.config().items())
        return f"ProgressiveSchedule({settings}) at iteration {self._iteration}, stage {self.stage}"
