import numpy as np
import pytest
import scipy.sparse
import torch

from pyro_hfvae.datasets import BagOfWords

from .conftest import write_bag_of_words


@pytest.mark.parametrize("split, part", [("train", "tr"), ("test", "te")])
def test_bag_of_words_fabricated(tmp_path, split, part):
    arrays = write_bag_of_words(tmp_path / "bow.npz")
    counts = scipy.sparse.csr_matrix(
        (arrays[f"X{part}_data"], arrays[f"X{part}_indices"], arrays[f"X{part}_indptr"]),
        shape=tuple(arrays[f"X{part}_shape"]),
    )
    dataset = BagOfWords(tmp_path / "bow.npz", split)
    n = counts.shape[0]
    assert len(dataset) == n and dataset.observation_shape == (6,)
    assert dataset.vocabulary == ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
    assert dataset.class_names == ("rec.autos", "sci.space", "talk.politics.misc")
    assert dataset.factor_names == ("category",) and dataset.factor_sizes == (3,)
    index = np.array([n - 1, 0, 2, 2])
    x = dataset.observations(index)
    assert x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy(), counts[index].toarray())
    np.testing.assert_array_equal(dataset[1].numpy(), counts[1].toarray()[0])
    np.testing.assert_array_equal(dataset.factors_of(index)[:, 0], arrays[f"y{part}"][index])
    factors = np.array([[1], [0], [1]])
    drawn = dataset.index_of(factors, random_state=0)
    np.testing.assert_array_equal(arrays[f"y{part}"][drawn], factors[:, 0])
    raw = dataset.render(factors, random_state=0)
    assert scipy.sparse.issparse(raw) and (raw != counts[drawn]).nnz == 0
    sparse = BagOfWords(tmp_path / "bow.npz", split, sparse=True).observations(index)
    assert sparse.layout == torch.sparse_coo
    np.testing.assert_array_equal(sparse.to_dense().numpy(), counts[index].toarray())
    batches = list(BagOfWords(tmp_path / "bow.npz", split, sparse=True).batches(4, shuffle=False))
    assert batches[0][0].layout == torch.sparse_coo
    np.testing.assert_array_equal(
        torch.cat([b.to_dense() for b, _ in batches]).numpy(), counts.toarray()
    )


def test_bag_of_words_real(shared_data):
    path = shared_data / "20newsgroups" / "20news_bydate_bow.npz"
    train, test = BagOfWords(path, "train"), BagOfWords(path, "test")
    assert (len(train), len(test)) == (11314, 7532)
    assert len(train.vocabulary) == 1995 and len(train.class_names) == 20
    assert train.class_names[0] == "alt.atheism"
    index = np.random.default_rng(0).integers(0, len(test), 64)
    x = test.observations(index)
    np.testing.assert_array_equal(x.sum(1).numpy(), np.asarray(test.counts[index].sum(1)).ravel())
    assert np.bincount(train.labels).min() > 300


@pytest.mark.parametrize(
    "override, error, match",
    [
        ({"vocab": None}, ValueError, r"\['vocab'\] are missing"),
        ({"Xtr_shape": np.array([9, 7])}, ValueError, r"Xtr_shape = \(9 documents, 6 words\)"),
        ({"Xtr_indices": np.full(22, 9, dtype=np.int32)}, ValueError, "valid CSR parts Xtr_"),
        ({"ytr": np.full(9, 3)}, ValueError, r"labels in \[0, 3\)"),
    ],
)
def test_bag_of_words_errors(tmp_path, override, error, match):
    arrays = write_bag_of_words(tmp_path / "bow.npz")
    if "Xtr_indices" in override:
        override["Xtr_indices"] = np.full_like(arrays["Xtr_indices"], 9)
    write_bag_of_words(tmp_path / "bow.npz", **override)
    with pytest.raises(error, match=match):
        BagOfWords(tmp_path / "bow.npz")


def test_bag_of_words_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        BagOfWords(tmp_path / "bow.npz")
    (tmp_path / "bow.npz").write_text("text")
    with pytest.raises(ValueError, match="not one"):
        BagOfWords(tmp_path / "bow.npz")
    arrays = write_bag_of_words(tmp_path / "bow.npz")
    with pytest.raises(ValueError, match="split 'train' or 'test'"):
        BagOfWords(tmp_path / "bow.npz", "dev")
    write_bag_of_words(tmp_path / "bow.npz", Xtr_data=-arrays["Xtr_data"])
    with pytest.raises(ValueError, match="non-negative"):
        BagOfWords(tmp_path / "bow.npz")
