import math

import pyro.distributions as dist
import pytest
import torch

from pyro_hfvae.training._run_evaluation import _information_summary


def test_information_summary_keeps_nested_group_paths():
    # Four points apart in every coordinate: each code carries log 4 nats.
    codes = torch.arange(4.0).reshape(4, 1) * 10

    def posterior(x):
        return {"a": dist.Normal(x, 0.01).to_event(1), "b": dist.Normal(-x, 0.01).to_event(1),
                "c": dist.Normal(2 * x, 0.01).to_event(1)}

    summary = _information_summary(posterior, codes, {"a": "style/pose", "b": "style/shape", "c": None}, seed=0)
    assert set(summary["groups"]) == {"style", "style/pose", "style/shape", "c"}
    for value in summary["groups"].values():
        assert value == pytest.approx(math.log(4), abs=1e-6)
