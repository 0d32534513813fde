import json
import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch

from pyro_hfvae.infer.progressive import ProgressiveSchedule
from pyro_hfvae.metrics.information_flow import (
    InformationFlow,
    InformationRecord,
    information_table,
    plot_information_flow,
)
from pyro_hfvae.models.vlae import VLAE


def classes_posterior(x):
    # x holds a class id in [0, 12): z3 sees 2 classes, z2 sees 4, z1 sees 12, "constant" none.
    return {
        "z3": dist.Normal(x // 6, 1e-4).to_event(1),
        "z2": dist.Normal(x // 3, 1e-4).to_event(1),
        "z1": dist.Normal(x, 1e-4).to_event(1),
        "constant": dist.Normal(0.0 * x, 1.0).to_event(1),
    }


CLASS_DATA = torch.arange(12.0).repeat(5).reshape(60, 1)


def test_exact_for_separated_posteriors():
    # Non-overlapping components: I(x; z) = log(number of distinct posteriors), exactly.
    flow = InformationFlow(classes_posterior, CLASS_DATA, batch_size=7)
    record = flow.record(stage=1, iteration=10, active=["z3", "z2"])
    assert record.levels == pytest.approx(
        {"z3": math.log(2), "z2": math.log(4), "z1": math.log(12), "constant": 0.0}, abs=1e-6
    )
    assert record.total == pytest.approx(math.log(4), abs=1e-6)  # z3 is a function of z2
    assert flow.record(2, 20, ["z3", "z2", "z1", "constant"]).total == pytest.approx(math.log(12), abs=1e-6)


def mixture_information(separation):
    """I(x; z) for x uniform on {0, 1} and z | x ~ N(+-separation / 2, 1), by quadrature."""
    grid = np.linspace(-12 - separation, 12 + separation, 200_001)
    step = grid[1] - grid[0]
    density = 0.5 * (np.exp(-0.5 * (grid - separation / 2) ** 2) + np.exp(-0.5 * (grid + separation / 2) ** 2))
    density /= math.sqrt(2 * math.pi)
    mixture_entropy = -np.sum(density * np.log(np.maximum(density, 1e-300))) * step
    return mixture_entropy - 0.5 * math.log(2 * math.pi * math.e)


@pytest.mark.parametrize("a, b", [(1.0, 0.5), (2.5, 0.0), (3.0, 4.0)])
def test_gaussian_mixture_closed_form(a, b):
    labels = torch.arange(2000.0).remainder(2).reshape(-1, 1)
    sign = 2 * labels - 1

    def posterior(x):
        return {
            "za": dist.Normal(sign_of(x) * a / 2, 1.0).to_event(1),
            "zb": dist.Normal(sign_of(x) * b / 2, 1.0).to_event(1),
        }

    def sign_of(x):
        return 2 * x - 1

    assert torch.equal(sign_of(labels), sign)
    record = InformationFlow(posterior, labels, random_state=1).record(0, 0, ["za", "zb"])
    # Monte Carlo over 2,000 samples: standard error about 0.01 nats.
    assert record.levels["za"] == pytest.approx(mixture_information(a), abs=0.04)
    assert record.levels["zb"] == pytest.approx(mixture_information(b), abs=0.04)
    # Jointly, the two coordinates are one mixture along (a, b): separation sqrt(a^2 + b^2).
    assert record.total == pytest.approx(mixture_information(math.hypot(a, b)), abs=0.04)


def test_mixture_information_reference():
    assert mixture_information(0.0) == pytest.approx(0.0, abs=1e-9)
    assert mixture_information(30.0) == pytest.approx(math.log(2), abs=1e-9)


def test_records_at_stage_ends():
    flow = InformationFlow(classes_posterior, CLASS_DATA)
    schedule = ProgressiveSchedule(["z3", "z2", "z1"], steps_per_level=[2, 3, 1], fade_in_steps=1)
    returned = []
    for _ in range(9):
        schedule.step()
        returned.append(flow(schedule))
    assert [r is not None for r in returned] == [
        False,
        True,
        False,
        False,
        True,
        True,
        False,
        False,
        False,
    ]
    assert [(r.stage, r.iteration, r.active) for r in flow.records] == [
        (0, 2, ("z3",)),
        (1, 5, ("z3", "z2")),
        (2, 6, ("z3", "z2", "z1")),
    ]
    assert [r.total for r in flow.records] == pytest.approx([math.log(2), math.log(4), math.log(12)], abs=1e-6)


def _record(stage, active, values, total):
    return InformationRecord(stage, 100 * (stage + 1), tuple(active), dict(zip(["z3", "z2", "z1"], values)), total)


RUN_A = [
    _record(0, ["z3"], [10.0, 0.02, 0.01], 10.0),
    _record(1, ["z3", "z2"], [7.0, 6.0, 0.0], 12.5),
]
RUN_B = [
    _record(0, ["z3"], [11.0, 0.0, 0.03], 11.0),
    _record(1, ["z3", "z2"], [8.0, 5.0, 0.0], 12.0),
]


def test_table_layout_and_mean_std():
    assert information_table([RUN_A]) == (
        "| stage | I(x;z3) | I(x;z2) | I(x;z1) | total |\n"
        "|---|---|---|---|---|\n"
        "| 0 | 10.00 |  |  | 10.00 |\n"
        "| 1 | 7.00 | 6.00 |  | 12.50 |"
    )
    sd = np.std([10.0, 11.0], ddof=1)  # 0.7071
    assert information_table([RUN_A, RUN_B], digits=1).splitlines()[2:] == [
        f"| 0 | 10.5 ± {sd:.1f} |  |  | 10.5 ± {sd:.1f} |",
        f"| 1 | 7.5 ± {sd:.1f} | 5.5 ± {sd:.1f} |  | 12.2 ± {np.std([12.5, 12.0], ddof=1):.1f} |",
    ]


def test_table_rejects_mismatched_runs():
    with pytest.raises(ValueError, match="at least one run"):
        information_table([[]])
    other = [_record(0, ["z3", "z2"], [1.0, 1.0, 1.0], 1.0)]
    with pytest.raises(ValueError, match="same active levels"):
        information_table([RUN_A, other])


def test_plot(tmp_path):
    path = tmp_path / "flow.png"
    figure = plot_information_flow([RUN_A, RUN_B], path=path)
    assert path.stat().st_size > 0 and list(tmp_path.iterdir()) == [path]  # no temporary left
    axes = figure.get_axes()
    assert len(axes) == 2
    widths = [patch.get_width() for patch in axes[1].patches]
    assert widths == pytest.approx([7.5, 5.5, 0.0])
    assert axes[0].get_title() == "stage 0: I(x;z) = 10.50"


def test_state_round_trip():
    flow = InformationFlow(classes_posterior, CLASS_DATA)
    flow.record(0, 5, ["z3"])
    state = json.loads(json.dumps(flow.state_dict()))
    restored = InformationFlow(classes_posterior, CLASS_DATA)
    restored.load_state_dict(state)
    assert restored.records == flow.records
    assert restored.table() == flow.table()


def test_bad_inputs():
    with pytest.raises(TypeError, match="one-shot iterator"):
        InformationFlow(classes_posterior, iter([CLASS_DATA]))
    with pytest.raises(TypeError, match="callable"):
        InformationFlow("posterior", CLASS_DATA)
    with pytest.raises(ValueError, match="'records'"):
        InformationFlow(classes_posterior, CLASS_DATA).load_state_dict({})


def test_vlae_levels_are_bounded_by_log_n():
    vlae = VLAE(levels=3, latent_dim=2, image_shape=(1, 32, 32), channels=4, hidden_dim=8)
    data = (torch.rand(40, 1, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    batches = list(data.split(16))  # a re-iterable of batches
    record = InformationFlow(vlae.posterior, batches).record(2, 0, vlae.sites)
    assert list(record.levels) == list(vlae.sites)
    assert all(-0.05 < value <= math.log(40) + 1e-9 for value in record.levels.values())
    assert max(record.levels.values()) - 0.05 <= record.total <= math.log(40) + 1e-9
