import json

import numpy as np
import pytest

from pyro_hfvae.infer.progressive import ProgressiveSchedule

LEVELS = ["z3", "z2", "z1"]


def advance(schedule, steps):
    for _ in range(steps):
        schedule.step()
    return schedule


def reference(t, steps, fade, beta=1.0, pre_kl=0.5, fade_in=True, use_pre_kl=True):
    """Independent restatement: (stage, fade-in per level, beta per level) at iteration t."""
    starts = [sum(steps[:s]) for s in range(len(steps))]
    stage = max(s for s, start in enumerate(starts) if t >= start)
    alphas, betas = [], []
    for level, start in enumerate(starts):
        if level > stage:
            alphas.append(0.0)
        elif level == 0 or not fade_in or fade == 0:
            alphas.append(1.0)
        else:
            alphas.append(min(1.0, (t - start) / fade))
        betas.append(beta if level <= stage else (pre_kl if use_pre_kl else 0.0))
    return stage, alphas, betas


@pytest.mark.parametrize(
    "t, stage, alphas",
    [
        (0, 0, [1.0, 0.0, 0.0]),
        (9, 0, [1.0, 0.0, 0.0]),  # steps - 1: still stage 0
        (10, 1, [1.0, 0.0, 0.0]),  # steps: z2 added, alpha exactly 0 at its first iteration
        (11, 1, [1.0, 0.25, 0.0]),
        (13, 1, [1.0, 0.75, 0.0]),
        (14, 1, [1.0, 1.0, 0.0]),  # steps + fade: fully on
        (19, 1, [1.0, 1.0, 0.0]),
        (20, 2, [1.0, 1.0, 0.0]),
        (22, 2, [1.0, 1.0, 0.5]),
        (29, 2, [1.0, 1.0, 1.0]),
        (30, 2, [1.0, 1.0, 1.0]),  # after the last stage: stays at the last
        (1000, 2, [1.0, 1.0, 1.0]),
    ],
)
def test_stage_boundaries(t, stage, alphas):
    schedule = advance(ProgressiveSchedule(LEVELS, steps_per_level=10, fade_in_steps=4, pre_kl=0.5, beta=2.0), t)
    assert schedule.iteration == t
    assert schedule.stage == stage
    assert schedule.active == tuple(LEVELS[: stage + 1])
    assert schedule.inactive == tuple(LEVELS[stage + 1 :])
    assert [schedule.fade_in(site) for site in LEVELS] == alphas
    assert schedule.betas() == {site: 2.0 if i <= stage else 0.5 for i, site in enumerate(LEVELS)}


@pytest.mark.parametrize("steps", [7, [3, 8, 5], [1, 1, 1]])
@pytest.mark.parametrize("fade", [0, 1, 4, 12])
@pytest.mark.parametrize("fade_in, use_pre_kl", [(True, True), (False, True), (True, False), (False, False)])
def test_matches_reference_every_iteration(steps, fade, fade_in, use_pre_kl):
    schedule = ProgressiveSchedule(
        LEVELS,
        steps_per_level=steps,
        fade_in_steps=fade,
        pre_kl=0.3,
        beta=4.0,
        fade_in=fade_in,
        use_pre_kl=use_pre_kl,
    )
    steps = steps if isinstance(steps, list) else [steps] * 3
    assert schedule.total_steps == sum(steps)
    for t in range(sum(steps) + fade + 3):
        stage, alphas, betas = reference(t, steps, fade, 4.0, 0.3, fade_in, use_pre_kl)
        assert schedule.stage == stage, t
        assert [schedule.fade_in(site) for site in LEVELS] == pytest.approx(alphas, abs=1e-12), t
        assert list(schedule.betas().values()) == betas, t
        assert list(schedule.betas()) == LEVELS
        schedule.step()


def test_ablation_switches():
    schedule = advance(ProgressiveSchedule(LEVELS, 10, fade_in_steps=4, fade_in=False, use_pre_kl=False), 10)
    assert schedule.fade_in("z2") == 1.0  # no fade-in: on at once
    assert schedule.fade_in("z1") == 0.0  # still not added
    assert schedule.betas() == {"z3": 1.0, "z2": 1.0, "z1": 0.0}


def test_stage_start_end_and_completed_stage():
    schedule = ProgressiveSchedule(LEVELS, [3, 4, 2], fade_in_steps=1)
    assert [schedule.stage_start(s) for s in range(3)] == [0, 3, 7]
    assert [schedule.stage_end(s) for s in range(3)] == [3, 7, 9]
    completed = {}
    for _ in range(12):
        schedule.step()
        if schedule.completed_stage is not None:
            completed[schedule.completed_stage] = schedule.iteration
    assert completed == {0: 3, 1: 7, 2: 9}
    with pytest.raises(ValueError, match="stage index"):
        schedule.stage_start(3)


def test_state_round_trip_through_json():
    schedule = advance(ProgressiveSchedule(LEVELS, [5, 6, 7], fade_in_steps=3, pre_kl=0.1), 8)
    state = json.loads(json.dumps(schedule.state_dict()))
    restored = ProgressiveSchedule(**state["config"])
    restored.load_state_dict(state)
    assert restored.iteration == 8
    assert restored.state_dict() == schedule.state_dict()


@pytest.mark.parametrize("checkpoint_at", [0, 4, 5, 6, 13, 30])
def test_resumed_schedule_continues_identically(checkpoint_at):
    def trajectory(schedule, steps):
        out = []
        for _ in range(steps):
            out.append(
                (
                    schedule.stage,
                    schedule.active,
                    [schedule.fade_in(s) for s in LEVELS],
                    schedule.betas(),
                )
            )
            schedule.step()
        return out

    config = dict(levels=LEVELS, steps_per_level=[5, 6, 7], fade_in_steps=3)
    straight = trajectory(ProgressiveSchedule(**config), 40)
    first = ProgressiveSchedule(**config)
    head = trajectory(first, checkpoint_at)
    resumed = ProgressiveSchedule(**config)
    resumed.load_state_dict(first.state_dict())
    assert head + trajectory(resumed, 40 - checkpoint_at) == straight


@pytest.mark.parametrize(
    "change",
    [
        {"steps_per_level": [5, 6, 8]},
        {"fade_in_steps": 2},
        {"pre_kl": 0.2},
        {"beta": 3.0},
        {"fade_in": False},
        {"use_pre_kl": False},
        {"levels": ["a", "b", "c"]},
    ],
)
def test_load_rejects_other_settings(change):
    config = dict(levels=LEVELS, steps_per_level=[5, 6, 7], fade_in_steps=3)
    state = advance(ProgressiveSchedule(**config), 4).state_dict()
    other = ProgressiveSchedule(**{**config, **change})
    with pytest.raises(ValueError, match="same settings.*" + next(iter(change))):
        other.load_state_dict(state)
    assert other.iteration == 0


@pytest.mark.parametrize(
    "state, match",
    [
        ({"iteration": 3}, "keys"),
        ([1, 2], "keys"),
        ({"iteration": -1, "config": None}, "config"),
        ({"iteration": -1, "config": ProgressiveSchedule(LEVELS, 5).config()}, "iteration"),
        ({"iteration": 2.5, "config": ProgressiveSchedule(LEVELS, 5).config()}, "iteration"),
    ],
)
def test_load_rejects_malformed_state(state, match):
    with pytest.raises(ValueError, match=match):
        ProgressiveSchedule(LEVELS, 5).load_state_dict(state)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(levels=[], steps_per_level=5), "non-empty"),
        (dict(levels="z1", steps_per_level=5), "non-empty"),
        (dict(levels=["z1", "z1"], steps_per_level=5), "distinct"),
        (dict(levels=["z1", 2], steps_per_level=5), "site name"),
        (dict(levels=LEVELS, steps_per_level=0), "steps_per_level"),
        (dict(levels=LEVELS, steps_per_level=[5, 5]), "one steps_per_level entry per level"),
        (dict(levels=LEVELS, steps_per_level=5.0), "steps_per_level"),
        (dict(levels=LEVELS, steps_per_level=5, fade_in_steps=-1), "fade_in_steps"),
        (dict(levels=LEVELS, steps_per_level=5, pre_kl=-0.1), "pre_kl"),
        (dict(levels=LEVELS, steps_per_level=5, beta=float("nan")), "beta"),
        (dict(levels=LEVELS, steps_per_level=5, fade_in=1), "bools"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProgressiveSchedule(**kwargs)


def test_unknown_site():
    with pytest.raises(ValueError, match="expected one of the levels"):
        ProgressiveSchedule(LEVELS, 5).fade_in("z4")


def test_single_level_is_a_plain_vae_schedule():
    schedule = advance(ProgressiveSchedule(["z"], 3, fade_in_steps=10), 5)
    assert schedule.stage == 0 and schedule.fade_in("z") == 1.0 and schedule.betas() == {"z": 1.0}


def test_numpy_integers_are_accepted():
    schedule = ProgressiveSchedule(LEVELS, list(np.array([2, 3, 4])), fade_in_steps=np.int64(2))
    assert schedule.steps_per_level == (2, 3, 4) and type(schedule.steps_per_level[0]) is int
    assert json.dumps(schedule.state_dict())  # plain Python values
