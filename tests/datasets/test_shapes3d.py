import numpy as np
import pytest
import torch

from pyro_hfvae.datasets import Shapes3D

from .conftest import SHAPES3D_VALUES, write_shapes3d

SIZES = (2, 2, 2, 3, 2, 2)


@pytest.mark.parametrize("shuffled", [False, True])
def test_shapes3d_fabricated(tmp_path, shuffled):
    order = np.random.default_rng(0).permutation(96) if shuffled else None
    images, labels = write_shapes3d(tmp_path / "3dshapes.h5", order=order)
    dataset = Shapes3D(tmp_path / "3dshapes.h5", return_factors=True)
    assert dataset.factor_names == (
        "floor_hue",
        "wall_hue",
        "object_hue",
        "scale",
        "shape",
        "orientation",
    )
    assert dataset.factor_sizes == SIZES and len(dataset) == 96
    for k in range(6):
        np.testing.assert_array_equal(dataset.factor_values[k], SHAPES3D_VALUES[k])
    factors = dataset.factors_of(np.arange(96))
    # each factor class is the rank of the label value
    for k in range(6):
        np.testing.assert_array_equal(SHAPES3D_VALUES[k][factors[:, k]], labels[:, k])
    np.testing.assert_array_equal(dataset.index_of(factors), np.arange(96))
    grid = np.stack(np.unravel_index(np.arange(96), SIZES), axis=-1)
    np.testing.assert_array_equal(dataset.factors_of(dataset.index_of(grid)), grid)
    if not shuffled:
        np.testing.assert_array_equal(factors, grid)
    x = dataset.observations([5, 0])
    assert x.dtype == torch.float32 and x.shape == (2, 3, 64, 64) and x.is_contiguous()
    np.testing.assert_allclose(x.numpy(), images[[5, 0]].transpose(0, 3, 1, 2) / 255, rtol=1e-6)
    np.testing.assert_array_equal(dataset.render(factors[[7, 2]]), images[[7, 2]])
    sampled = dataset.sample_observations_from_factors(factors[[7, 2]], random_state=0)
    np.testing.assert_array_equal(sampled.numpy(), dataset.observations([7, 2]).numpy())
    observation, item_factors, index = dataset[7]
    assert index == 7 and item_factors.tolist() == factors[7].tolist()


def test_shapes3d_errors(tmp_path):
    h5py = pytest.importorskip("h5py")
    with pytest.raises(FileNotFoundError, match="3dshapes.h5"):
        Shapes3D(tmp_path / "3dshapes.h5")
    path = tmp_path / "bad.h5"
    path.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="could not open"):
        Shapes3D(path)
    with h5py.File(path, "w") as file:
        file.create_dataset("imgs", data=np.zeros((1, 64, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"images and labels .* found \['imgs'\]"):
        Shapes3D(path)
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=np.zeros((2, 64, 64), dtype=np.uint8))
        file.create_dataset("labels", data=np.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"shape \(n, 64, 64, 3\)"):
        Shapes3D(path)
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=np.zeros((2, 64, 64, 3), dtype=np.uint8))
        file.create_dataset("labels", data=np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"labels of shape \(2, 6\)"):
        Shapes3D(path)
    write_shapes3d(path, drop_rows=1)
    with pytest.raises(ValueError, match="exactly once but 95 rows cover 95 of its 96 cells"):
        Shapes3D(path)
    write_shapes3d(path, order=np.r_[np.arange(95), 0])
    with pytest.raises(ValueError, match="exactly once but 96 rows cover 95 of its 96 cells"):
        Shapes3D(path)
