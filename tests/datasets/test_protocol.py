import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.utils.data import DataLoader

from pyro_hfvae.datasets import MNIST, BagOfWords, Digits, DSprites, GroundTruthDataset, Shapes3D

from .conftest import write_bag_of_words, write_shapes3d


@pytest.fixture(params=["digits", "mnist", "shapes3d", "bag_of_words"])
def make_dataset(request, tmp_path, mnist_folder):
    def make(**kwargs):
        if request.param == "digits":
            return Digits(**kwargs)
        if request.param == "mnist":
            return MNIST(mnist_folder[0], "test", **kwargs)
        if request.param == "shapes3d":
            if not (tmp_path / "3dshapes.h5").exists():
                write_shapes3d(
                    tmp_path / "3dshapes.h5", order=np.random.default_rng(3).permutation(96)
                )
            return Shapes3D(tmp_path / "3dshapes.h5", **kwargs)
        if not (tmp_path / "bow.npz").exists():
            write_bag_of_words(tmp_path / "bow.npz")
        return BagOfWords(tmp_path / "bow.npz", **kwargs)

    return make


def _is_grid(dataset):
    return not hasattr(dataset, "labels")


@pytest.mark.parametrize("n", [0, 1, 50])
def test_sample_factors_and_observations(make_dataset, n):
    dataset = make_dataset()
    assert isinstance(dataset, GroundTruthDataset)
    assert dataset.num_factors == len(dataset.factor_names) == len(dataset.factor_sizes)
    factors = dataset.sample_factors(n, random_state=np.random.RandomState(0))
    assert factors.dtype == np.int64 and factors.shape == (n, dataset.num_factors)
    assert ((factors >= 0) & (factors < np.array(dataset.factor_sizes))).all()
    np.testing.assert_array_equal(factors, dataset.sample_factors(n, random_state=0))
    x = dataset.sample_observations_from_factors(factors, random_state=0)
    assert x.dtype == torch.float32 and x.shape == (n,) + dataset.observation_shape
    if n and not isinstance(dataset, BagOfWords):
        assert x.min() >= 0 and x.max() <= 1
    index = dataset.index_of(factors, random_state=0)
    assert index.dtype == np.int64 and index.shape == (n,)
    np.testing.assert_array_equal(dataset.factors_of(index), factors)
    np.testing.assert_array_equal(x.numpy(), dataset.observations(index).numpy())


def test_grid_index_round_trip(make_dataset):
    dataset = make_dataset()
    index = np.arange(len(dataset))
    if _is_grid(dataset):
        np.testing.assert_array_equal(dataset.index_of(dataset.factors_of(index)), index)
    else:
        np.testing.assert_array_equal(dataset.factors_of(index)[:, 0], dataset.labels)


def test_dataloader_with_plate_subsample(make_dataset):
    dataset = make_dataset(return_factors=True)
    loader = DataLoader(
        dataset, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    seen = []
    for x, factors, idx in loader:
        assert x.shape == (len(idx),) + dataset.observation_shape
        np.testing.assert_array_equal(x.numpy(), dataset.observations(idx).numpy())
        np.testing.assert_array_equal(factors.numpy(), dataset.factors_of(idx))
        with pyro.plate("data", size=len(dataset), subsample=idx) as plate_index:
            assert torch.equal(plate_index, idx)
            pyro.sample("x", dist.Normal(0.0, 1.0).expand(x.shape[1:]).to_event(x.dim() - 1), obs=x)
        seen.append(idx)
    assert sorted(torch.cat(seen).tolist()) == list(range(len(dataset)))


def test_items(make_dataset):
    dataset = make_dataset()
    assert torch.equal(dataset[-1], dataset.observations([len(dataset) - 1])[0])
    with pytest.raises(IndexError, match="expected an index in"):
        dataset[len(dataset)]
    observation, factors, index = make_dataset(return_factors=True)[2]
    assert index == 2 and factors.dtype == torch.int64
    np.testing.assert_array_equal(factors.numpy(), dataset.factors_of([2])[0])


def test_batches(make_dataset):
    dataset = make_dataset()
    batches = list(dataset.batches(5, torch.Generator().manual_seed(1)))
    index = torch.cat([idx for _, idx in batches])
    assert sorted(index.tolist()) == list(range(len(dataset)))
    assert index.tolist() != list(range(len(dataset)))
    again = torch.cat([idx for _, idx in dataset.batches(5, torch.Generator().manual_seed(1))])
    assert torch.equal(index, again)
    for x, idx in batches:
        assert idx.dtype == torch.int64 and len(idx) <= 5
        np.testing.assert_array_equal(x.numpy(), dataset.observations(idx).numpy())
    kept = [len(idx) for _, idx in dataset.batches(5, drop_last=True)]
    assert kept == [5] * (len(dataset) // 5)
    ordered = torch.cat([idx for _, idx in dataset.batches(5, shuffle=False)])
    assert ordered.tolist() == list(range(len(dataset)))
    with pytest.raises(ValueError, match="positive batch_size"):
        next(dataset.batches(0))


def test_empty_and_bad_indices(make_dataset):
    dataset = make_dataset()
    assert dataset.observations([]).shape == (0,) + dataset.observation_shape
    with pytest.raises(TypeError, match="integer indices"):
        dataset.observations(torch.tensor([True]))
    with pytest.raises(ValueError, match="1-D"):
        dataset.observations(np.zeros((1, 1), dtype=int))
    with pytest.raises(IndexError, match=f"expected indices in \\[0, {len(dataset)}\\)"):
        dataset.observations(torch.tensor([len(dataset)]))


def test_dsprites_is_ground_truth():
    dataset = DSprites()
    assert isinstance(dataset, GroundTruthDataset)
    factors = dataset.sample_factors(3, random_state=0)
    np.testing.assert_array_equal(dataset.factors_of(dataset.index_of(factors)), factors)
