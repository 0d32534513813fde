# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Data sets kept on a CUDA device (``device="cuda"``) serve the same observations and the same
batches (``batches``, the Trainer's ``_RandomBatches``) as on the CPU.
"""

import numpy as np
import pytest
import torch

from pyro_hfvae.datasets import MNIST, BagOfWords, Digits, DSprites, Shapes3D
from pyro_hfvae.datasets import _dsprites_rendering as rendering
from pyro_hfvae.training._random_batches import _RandomBatches

from .conftest import write_bag_of_words, write_shapes3d

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
KINDS = ["digits", "mnist", "shapes3d", "bag_of_words", "dsprites"]
FAKE_ROWS = 512  # dSprites: a stand-in grid of the first rows (the full one takes 15 s to render)


@pytest.fixture
def make_dataset(tmp_path, mnist_folder, monkeypatch):
    grid = np.random.default_rng(4).integers(0, 256, (FAKE_ROWS, 512)).astype(np.uint8)
    monkeypatch.setattr(rendering, "NUM_IMAGES", FAKE_ROWS)
    monkeypatch.setattr(rendering, "render_grid", lambda: grid.copy())

    def make(kind, device):
        if kind == "digits":
            return Digits(device=device)
        if kind == "mnist":
            return MNIST(mnist_folder[0], "test", device=device)
        if kind == "shapes3d":
            if not (tmp_path / "3dshapes.h5").exists():
                write_shapes3d(tmp_path / "3dshapes.h5", order=np.random.default_rng(3).permutation(96))
            return Shapes3D(tmp_path / "3dshapes.h5", device=device)
        if kind == "bag_of_words":
            if not (tmp_path / "bow.npz").exists():
                write_bag_of_words(tmp_path / "bow.npz")
            return BagOfWords(tmp_path / "bow.npz", device=device)
        return DSprites(cache_dir=tmp_path / "cache", device=device)

    return make


def size_of(dataset) -> int:
    return FAKE_ROWS if isinstance(dataset, DSprites) else len(dataset)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("device", DEVICES)
def test_observations_on_device_equal_cpu(make_dataset, kind, device):
    cpu, on_device = make_dataset(kind, "cpu"), make_dataset(kind, device)
    size = size_of(cpu)
    index = np.random.default_rng(5).permutation(size)[: min(size, 37)]
    expected = cpu.observations(index)
    for indices in (index, torch.from_numpy(index), torch.from_numpy(index).to(device)):  # host and device indices
        actual = on_device.observations(indices)
        assert actual.device.type == torch.device(device).type and actual.dtype == torch.float32
        assert torch.equal(actual.cpu(), expected)
    assert torch.equal(on_device[int(index[0])].cpu(), cpu[int(index[0])])
    if not isinstance(cpu, DSprites):  # the stand-in grid does not hold the factors' images
        factors = cpu.factors_of(index)
        actual = on_device.sample_observations_from_factors(factors, random_state=0)
        assert torch.equal(actual.cpu(), cpu.sample_observations_from_factors(factors, random_state=0))
    assert expected.abs().sum() > 0


@pytest.mark.parametrize("kind", ["digits", "mnist", "shapes3d", "bag_of_words"])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_batches_on_device_equal_cpu(make_dataset, kind, device, drop_last):
    cpu, on_device = make_dataset(kind, "cpu"), make_dataset(kind, device)
    expected = list(cpu.batches(3, torch.Generator().manual_seed(1), drop_last=drop_last))
    actual = list(on_device.batches(3, torch.Generator().manual_seed(1), drop_last=drop_last))
    assert len(actual) == len(expected) > 1
    for (x, idx), (x_cpu, idx_cpu) in zip(actual, expected):
        assert x.device.type == idx.device.type == torch.device(device).type
        assert torch.equal(idx.cpu(), idx_cpu) and torch.equal(x.cpu(), x_cpu)


@pytest.mark.parametrize("device", DEVICES)
def test_dsprites_rendered_without_grid_on_device_equals_cpu(device):
    factors = DSprites().sample_factors(6, random_state=0)
    expected = DSprites().sample_observations_from_factors(factors, random_state=0)
    actual = DSprites(device=device).sample_observations_from_factors(factors, random_state=0)
    assert actual.device.type == torch.device(device).type
    assert torch.equal(actual.cpu(), expected) and expected.sum() > 0


@pytest.mark.parametrize("device", DEVICES)
def test_trainer_random_batches_on_device_equal_cpu(device):
    expected = _RandomBatches(23, 4, seed=7, device=torch.device("cpu"))
    actual = _RandomBatches(23, 4, seed=7, device=torch.device(device))
    for _ in range(15):  # across epochs
        positions = actual.next()
        assert positions.device.type == torch.device(device).type
        assert torch.equal(positions.cpu(), expected.next())
    state, expected_state = actual.state_dict(), expected.state_dict()
    assert torch.equal(state.pop("epoch_state"), expected_state.pop("epoch_state")) and state == expected_state
