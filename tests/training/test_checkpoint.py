import random

import numpy as np
import pyro
import pyro.distributions.constraints as constraints
import pytest
import torch

from pyro_hfvae.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    param_store_state,
    restore_rng_state,
    save_checkpoint,
)
from pyro_hfvae.util import atomic_file


def _draw():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)], np.random.randn()


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    np.random.randn()  # leave a cached Gaussian in numpy's state
    state = capture_rng_state()
    expected = _draw()
    save_checkpoint(tmp_path / "c.pt", {"rng": state})
    _draw()
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert _draw() == expected


def test_atomic_file_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(path, "w") as file:
            file.write("half written")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary file left


def test_load_checkpoint_rejects_other_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="expected a checkpoint of format"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read"):
        load_checkpoint(tmp_path / "garbage.pt")
    with pytest.raises(FileNotFoundError, match="expected a checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_param_store_state_leaves_module_parameters_out_and_keeps_constraints(tmp_path):
    module = torch.nn.Linear(2, 1)
    pyro.module("net", module)
    pyro.param("scale", torch.tensor([0.5, 2.0]), constraint=constraints.positive)
    state = param_store_state(module)
    assert sorted(state["params"]) == ["scale"]
    save_checkpoint(tmp_path / "c.pt", {"param_store": state})  # constraints are objects: loaded weights_only
    pyro.clear_param_store()
    pyro.get_param_store().set_state(load_checkpoint(tmp_path / "c.pt")["param_store"])
    assert torch.allclose(pyro.param("scale"), torch.tensor([0.5, 2.0]))
    assert pyro.get_param_store()._constraints["scale"] is not None
