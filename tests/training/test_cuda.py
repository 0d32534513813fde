# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The Trainer and the CLI with ``training.device = "cuda"``: a tiny run completes, checkpoints,
resumes bit-exactly (straight against interrupted and resumed, both on the device) and
evaluates. The same checks run on the CPU where no CUDA device is present.
"""

import copy
import json
import math

import pytest
import torch

from pyro_hfvae.training.checkpoint import load_checkpoint
from pyro_hfvae.training.cli import main
from pyro_hfvae.training.trainer import CHECKPOINT_FILE, LOG_FILE, Trainer, read_jsonl

from .conftest import TINY, TINY_PROGRESSIVE

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
CONFIGS = {"hfvae": TINY, "progressive": TINY_PROGRESSIVE}


def _config(name: str, device: str) -> dict:
    config = copy.deepcopy(CONFIGS[name])
    config["training"]["device"] = device
    return config


def _parameters(trainer: Trainer) -> dict:
    return {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}


def _stop_at(step: int):
    def callback(trainer, record):
        if record["step"] == step:
            raise KeyboardInterrupt

    return callback


def _without_time(log: list) -> list:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in log]


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("device", DEVICES)
def test_run_on_device_resumes_bit_exactly(device, name, tmp_path):
    straight = Trainer(_config(name, device), tmp_path / "straight")
    assert straight.device.type == torch.device(device).type
    assert straight.train() == "completed"
    expected = _parameters(straight)
    assert all(value.device.type == torch.device(device).type for value in expected.values())

    interrupted = Trainer(_config(name, device), tmp_path / "resumed", callbacks=[_stop_at(3)])
    assert interrupted.train() == "interrupted"
    assert load_checkpoint(tmp_path / "resumed" / CHECKPOINT_FILE)["step"] == 3
    resumed = Trainer.from_run(tmp_path / "resumed")
    assert resumed.device.type == torch.device(device).type and resumed.step_count == 3
    assert resumed.train() == "completed"
    actual = _parameters(resumed)
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key
    log = read_jsonl(tmp_path / "resumed" / LOG_FILE)
    assert _without_time(log) == _without_time(read_jsonl(tmp_path / "straight" / LOG_FILE))
    assert all(math.isfinite(record["loss"]) for record in log if "loss" in record)


@pytest.mark.parametrize("device", DEVICES)
def test_evaluate_on_device(device, tmp_path):
    trainer = Trainer(_config("hfvae", device), tmp_path)
    trainer.train()
    result = trainer.evaluate("fast")
    assert set(result["metrics"]) == {"mig", "sap"}
    assert all(math.isfinite(value) for value in result["metrics"].values())
    information = result["information"]
    assert information["num_data"] == 64
    for value in [information["total"], *information["sites"].values()]:
        assert -0.05 < value <= math.log(64) + 1e-6
    assert json.loads((tmp_path / "metrics.json").read_text())["information"]["total"] == pytest.approx(
        information["total"])


CLI_FLAGS = ["--data", "digits", "--subset", "96", "--batch-size", "16", "--seed", "3", "--checkpoint-every", "2",
             "--log-every", "1", "--set", "model.hidden_dim=16", "--set", "model.style_dim=2",
             "--set", "evaluation.information_points=64", "--no-progress", "--no-report"]


@pytest.mark.parametrize("device", DEVICES)
def test_cli_trains_resumes_and_evaluates_on_device(device, tmp_path):
    run, straight = tmp_path / "run", tmp_path / "straight"
    assert main(["train", "--out", str(run), "--steps", "3", "--device", device, *CLI_FLAGS]) == 0
    assert main(["train", "--resume", str(run), "--steps", "6", "--no-progress", "--no-report"]) == 0
    assert main(["train", "--out", str(straight), "--steps", "6", "--device", device, *CLI_FLAGS]) == 0
    expected = load_checkpoint(straight / CHECKPOINT_FILE)["module"]
    actual = load_checkpoint(run / CHECKPOINT_FILE)["module"]
    assert actual.keys() == expected.keys()
    assert all(torch.equal(actual[k], expected[k]) for k in expected)
    assert main(["evaluate", str(run), "--preset", "fast", "--device", device]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 6 and set(metrics["metrics"]) == {"mig", "sap"}
