# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/bench_main_job.py at smoke size: the three steps run and the hand-written one trains."""

import pytest
import torch


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("bench_main_job")


def test_every_step_is_timed(bench, capsys):
    ms = bench.main(bench.make_parser().parse_args(["--repeats", "1", "--warmup", "0", "--inner", "1"]))
    assert sorted(ms) == ["networks", "plain_torch", "trainer"] and all(value > 0 for value in ms.values())
    assert "the 2x goal is 18.6 ms per step" in capsys.readouterr().out


def test_the_hand_written_step_updates_the_parameters_and_releases_the_gradients(bench):
    from pyro_hfvae.models import ConvHFVAE

    torch.manual_seed(0)
    model = ConvHFVAE(image_shape=(1, 8, 8), num_classes=3, style_dim=2, architecture="mlp", hidden_dim=16)
    x = (torch.rand(32, 1, 8, 8) > 0.5).float()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    bench.plain_step(model, optimizer, x, dataset_size=32)
    assert all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(before[name], value) for name, value in model.state_dict().items())
