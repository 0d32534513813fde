import numpy as np
import pytest
import torch

from pyro_hfvae.datasets import Shapes3D
from pyro_hfvae.training._random_batches import _RandomBatches
from pyro_hfvae.training.config import ConfigError, dumps_config, load_config
from pyro_hfvae.training.trainer import CONFIG_FILE, Trainer

from ..datasets.conftest import write_shapes3d

# The fabricated 3DShapes grid: floor_hue 2, wall_hue 2, object_hue 2, scale 3, shape 2, orientation 2 (96 items).
HOLD_OUT = {"scale": [2], "shape": [1]}


@pytest.fixture
def shapes3d_config(tiny_config, tmp_path):
    path = tmp_path / "3dshapes.h5"
    write_shapes3d(path, order=np.random.default_rng(4).permutation(96))
    tiny_config["data"] = {"name": "shapes3d", "path": str(path), "hold_out": dict(HOLD_OUT)}
    tiny_config["model"]["num_classes"] = 0
    return tiny_config


def _held_out_by_labels(path):
    """Held-out indices computed from the file's label values, independently of the data set's classes."""
    factors = Shapes3D(path).factors_of(np.arange(96))
    return set(np.flatnonzero((factors[:, 3] == 2) & (factors[:, 4] == 1)).tolist())


@pytest.mark.parametrize("subset", [0, 40])
def test_trainer_never_sees_held_out_items(shapes3d_config, tmp_path, monkeypatch, subset):
    shapes3d_config["data"]["subset"] = subset
    drawn = []
    next_batch = _RandomBatches.next

    def spy(self):
        positions = next_batch(self)
        drawn.append(positions.clone())
        return positions

    monkeypatch.setattr(_RandomBatches, "next", spy)
    trainer = Trainer(shapes3d_config, tmp_path / "run")
    read = []
    observations = trainer.dataset.observations
    trainer.dataset.observations = lambda indices: read.append(torch.as_tensor(indices).clone()) or observations(
        indices)
    assert trainer.train()
    held_out = _held_out_by_labels(shapes3d_config["data"]["path"])
    assert len(held_out) == 16
    assert trainer.dataset_size == (subset or 80)
    train = set(trainer.train_indices.tolist())
    assert len(train) == trainer.dataset_size and not train & held_out
    seen = {int(trainer.train_indices[p]) for batch in drawn for p in batch}
    seen_read = {int(i) for batch in read for i in batch}
    assert drawn and seen and not seen & held_out and not seen_read & held_out
    assert seen_read <= train
    # The run's config keeps the hold-out, so a resumed run holds out the same items.
    written = load_config(tmp_path / "run" / CONFIG_FILE)
    assert written["data"]["hold_out"] == HOLD_OUT


def test_config_round_trips_hold_out():
    text = dumps_config({"data": {"name": "dsprites", "hold_out": {"shape": [0], "posX": [22, 23]}}})
    assert 'hold_out = {shape = [0], posX = [22, 23]}' in text


@pytest.mark.parametrize("hold_out, match", [
    ({"shap": [1]}, r"\[data\] hold_out: expected hold-out factor names from 'floor_hue', 'wall_hue', 'object_hue', "
                    r"'scale', 'shape', 'orientation' but got 'shap'; did you mean 'shape'\?"),
    ({"scale": [3]}, r"\[data\] hold_out: expected classes of factor 'scale' in \[0, 3\) but got 3"),
    ({"scale": [0.5]}, r"\[data\] hold_out: expected integer classes of factor 'scale'"),
    ({"scale": 2}, r"\[data\] hold_out: expected a list of classes of factor 'scale'"),
    ({"shape": [0, 1]}, r"\[data\] hold_out: expected a hold-out that leaves items to train on but "
                        r"\{'shape': \[0, 1\]\} holds out all 96 items of Shapes3D"),
    ([1], r"expected \[data\] hold_out to be a table"),
])
def test_bad_hold_out_fails_before_the_run_directory(shapes3d_config, tmp_path, hold_out, match):
    shapes3d_config["data"]["hold_out"] = hold_out
    with pytest.raises(ConfigError, match=match):
        Trainer(shapes3d_config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_subset_larger_than_the_held_in_items(shapes3d_config, tmp_path):
    shapes3d_config["data"]["subset"] = 81
    with pytest.raises(ConfigError, match=r"expected \[data\] subset <= 80 \(the held-in items of shapes3d\) but "
                                          r"got 81"):
        Trainer(shapes3d_config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_batch_larger_than_the_held_in_items(shapes3d_config, tmp_path):
    shapes3d_config["data"]["hold_out"] = {"shape": [1]}
    shapes3d_config["training"]["batch_size"] = 49
    with pytest.raises(ConfigError, match=r"batch_size <= the number of training items \(48\) but got 49"):
        Trainer(shapes3d_config, tmp_path / "run")
