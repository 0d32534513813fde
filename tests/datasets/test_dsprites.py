import hashlib
import math
import zipfile

import numpy as np
import pytest
import torch

from pyro_hfvae.datasets import DSprites
from pyro_hfvae.datasets import _dsprites_rendering as rendering

PUBLISHED_MEAN = 0.0424944
PUBLISHED_IMAGE_STD = 0.195166
NUM_IMAGES = 737280


# An independent per-pixel renderer of the dSprites rules (SPEC section 6), with a plain
# crossing-number test over all 400 heart edges.
def _heart_vertices():
    vertices = []
    for k in range(400):
        t = 2 * math.pi * k / 400
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        vertices.append((0.5998 * x, 0.6619 * y + 1.4345))
    return vertices


HEART = _heart_vertices()


def _inside_polygon(u, v, vertices):
    inside = False
    for k in range(len(vertices)):
        xa, ya = vertices[k]
        xb, yb = vertices[(k + 1) % len(vertices)]
        if (ya > v) != (yb > v) and u < (xb - xa) * (v - ya) / (yb - ya) + xa:
            inside = not inside
    return inside


def brute_force_render(factors):
    shape, scale, orientation, pos_x, pos_y = (int(f) for f in factors)
    scale = np.linspace(0.5, 1, 6)[scale]
    theta = np.linspace(0, 2 * math.pi, 40)[orientation]
    cos, sin = math.cos(theta), math.sin(theta)
    cx = 16 + 32 * np.linspace(0, 1, 32)[pos_x]
    cy = 16 + 32 * np.linspace(0, 1, 32)[pos_y]
    heart_x = [x for x, _ in HEART]
    heart_y = [y for _, y in HEART]
    image = np.zeros((64, 64), dtype=np.uint8)
    for i in range(64):
        for j in range(64):
            dx = (j + 0.5) - cx
            dy = -((i + 0.5) - cy)
            u = (dx * cos + dy * sin) / scale
            v = (-dx * sin + dy * cos) / scale
            if shape == 0:
                inside = abs(u) < 9.6 and abs(v) < 9.6
            elif shape == 1:
                inside = (u / 12.77) * (u / 12.77) + (v / 7.21) * (v / 7.21) < 1
            else:
                # outside the vertices' bounding box a ray crosses the polygon an even number of
                # times
                inside = (
                    min(heart_x) - 1 < u < max(heart_x) + 1
                    and min(heart_y) - 1 < v < max(heart_y) + 1
                    and _inside_polygon(u, v, HEART)
                )
            image[i, j] = inside
    return image


def _random_factors(n, seed):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, size, n) for size in (3, 6, 40, 32, 32)], axis=1)


EDGE_CASES = [
    [shape, 5, orientation, x, y]
    for shape in range(3)
    for orientation, x, y in [(0, 0, 0), (7, 31, 0), (19, 0, 31), (39, 31, 31), (10, 15, 16)]
]


@pytest.mark.parametrize("factors", EDGE_CASES + _random_factors(6, seed=1).tolist())
def test_render_matches_brute_force(factors):
    image = DSprites().render(np.array([factors]))[0]
    expected = brute_force_render(factors)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, expected)


def test_render_batch_matches_one_by_one():
    factors = _random_factors(300, seed=2)
    dataset = DSprites()
    batch = dataset.render(factors)
    assert batch.shape == (300, 64, 64) and set(np.unique(batch)) <= {0, 1}
    for k in range(0, 300, 37):
        np.testing.assert_array_equal(batch[k], dataset.render(factors[k : k + 1])[0])


def test_reference_frames(shared_data):
    reference = np.load(shared_data / "dsprites_reference_frames.npz")
    images = DSprites().render(reference["factors"])
    wrong_pixels = (images != reference["images"]).sum(axis=(1, 2))
    assert len(wrong_pixels) == 133
    assert (wrong_pixels == 0).mean() >= 0.9
    assert wrong_pixels.max() <= 4


def test_pixel_mean_of_random_frames_near_published():
    # The mean over frames drawn uniformly from the grid estimates the grid mean; 5 standard errors.
    dataset = DSprites()
    images = dataset.render(dataset.sample_factors(4000, random_state=0))
    frame_means = images.reshape(len(images), -1).mean(axis=1)
    standard_error = frame_means.std(ddof=1) / math.sqrt(len(frame_means))
    assert abs(frame_means.mean() - PUBLISHED_MEAN) < 5 * standard_error
    assert standard_error < 5e-4


def test_protocol_attributes():
    dataset = DSprites()
    assert dataset.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert dataset.factor_sizes == (3, 6, 40, 32, 32)
    assert dataset.num_factors == 5
    assert dataset.observation_shape == (1, 64, 64)
    assert len(dataset) == NUM_IMAGES
    values = dataset.factor_values
    assert [len(v) for v in values] == [3, 6, 40, 32, 32]
    np.testing.assert_allclose(values[2][[0, -1]], [0, 2 * math.pi])


def test_grid_order_is_row_major_with_pos_y_fastest():
    dataset = DSprites()
    np.testing.assert_array_equal(
        dataset.factors_of([0, 1, 32, 1024, 40960, 245760, NUM_IMAGES - 1]),
        [
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 1],
            [0, 0, 0, 1, 0],
            [0, 0, 1, 0, 0],
            [0, 1, 0, 0, 0],
            [1, 0, 0, 0, 0],
            [2, 5, 39, 31, 31],
        ],
    )


def test_index_round_trip():
    dataset = DSprites()
    index = np.random.default_rng(0).integers(0, NUM_IMAGES, 1000)
    factors = dataset.factors_of(index)
    assert factors.dtype == np.int64 and factors.shape == (1000, 5)
    expected = (
        ((factors[:, 0] * 6 + factors[:, 1]) * 40 + factors[:, 2]) * 32 + factors[:, 3]
    ) * 32 + factors[:, 4]
    np.testing.assert_array_equal(dataset.index_of(factors), expected)
    np.testing.assert_array_equal(dataset.index_of(factors), index)
    np.testing.assert_array_equal(dataset.factors_of(torch.from_numpy(index)), factors)


def test_sample_factors_deterministic_and_like_disentanglement_lib():
    dataset = DSprites()
    first = dataset.sample_factors(500, random_state=3)
    np.testing.assert_array_equal(first, dataset.sample_factors(500, random_state=3))
    assert not np.array_equal(first, dataset.sample_factors(500, random_state=4))
    state = np.random.RandomState(3)
    expected = np.stack([state.randint(size, size=500) for size in dataset.factor_sizes], axis=1)
    np.testing.assert_array_equal(first, expected)
    assert first.dtype == np.int64 and first.min() == 0
    assert (first.max(axis=0) == np.array(dataset.factor_sizes) - 1).all()
    generated = dataset.sample_factors(500, random_state=np.random.default_rng(5))
    np.testing.assert_array_equal(generated, dataset.sample_factors(500, np.random.default_rng(5)))
    assert ((generated >= 0) & (generated < np.array(dataset.factor_sizes))).all()


def test_sample_observations_from_factors_renders_without_grid():
    dataset = DSprites()
    factors = dataset.sample_factors(64, random_state=0)
    x = dataset.sample_observations_from_factors(factors, random_state=0)
    assert x.dtype == torch.float32 and x.shape == (64, 1, 64, 64)
    np.testing.assert_array_equal(x[:, 0].numpy(), dataset.render(factors))
    assert dataset._packed is None


@pytest.mark.parametrize(
    "factors, error, match",
    [
        (np.zeros(5, dtype=int), ValueError, r"shape \(n, 5\)"),
        (np.zeros((2, 4), dtype=int), ValueError, r"shape \(n, 5\)"),
        (np.zeros((2, 5)), TypeError, "integer factor classes"),
        (np.array([[0, 6, 0, 0, 0]]), ValueError, "'scale' in \\[0, 6\\)"),
        (np.array([[0, 0, 0, 0, -1]]), ValueError, "'posY' in \\[0, 32\\)"),
    ],
)
def test_bad_factors(factors, error, match):
    with pytest.raises(error, match=match):
        DSprites().render(factors)
    with pytest.raises(error, match=match):
        DSprites().index_of(factors)


def test_bad_indices_and_random_state():
    dataset = DSprites()
    with pytest.raises(IndexError, match=r"\[0, 737280\)"):
        dataset.factors_of([0, NUM_IMAGES])
    with pytest.raises(ValueError, match="1-D"):
        dataset.factors_of(np.zeros((2, 2), dtype=int))
    with pytest.raises(TypeError, match="integer indices"):
        dataset.observations(np.array([0.5]))
    with pytest.raises(IndexError, match=r"\[0, 737280\)"):
        dataset.observations([-1])
    with pytest.raises(TypeError, match="random_state"):
        dataset.sample_factors(3, random_state="seed")
    with pytest.raises(ValueError, match="non-negative"):
        dataset.sample_factors(-1, random_state=0)


# The cache logic, with the renderer replaced by a cheap stand-in grid of only its first rows.
FAKE_ROWS = 4096


@pytest.fixture
def fake_grid(monkeypatch):
    grid = np.zeros((FAKE_ROWS, 512), dtype=np.uint8)
    grid[:, 0] = np.arange(FAKE_ROWS) % 251
    grid[:, 511] = np.arange(FAKE_ROWS) // 16
    monkeypatch.setattr(rendering, "NUM_IMAGES", FAKE_ROWS)
    calls = []

    def render_grid():
        calls.append(1)
        return grid.copy()

    monkeypatch.setattr(rendering, "render_grid", render_grid)
    return grid, calls


def test_cache_written_atomically_and_reused(tmp_path, fake_grid):
    grid, calls = fake_grid
    dataset = DSprites(cache_dir=tmp_path)
    dataset.load_grid()
    assert calls == [1]
    assert [p.name for p in tmp_path.iterdir()] == [dataset.cache_path.name]
    with np.load(dataset.cache_path) as cache:
        np.testing.assert_array_equal(cache["packed"], grid)
        assert str(cache["sha256"]) == hashlib.sha256(grid).hexdigest()
    again = DSprites(cache_dir=tmp_path)
    again.load_grid()
    assert calls == [1]
    np.testing.assert_array_equal(again._packed.numpy(), grid)


def test_corrupt_cache_is_regenerated_with_a_warning(tmp_path, fake_grid):
    grid, calls = fake_grid
    DSprites(cache_dir=tmp_path).load_grid()
    path = DSprites(cache_dir=tmp_path).cache_path
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(RuntimeWarning, match="corrupt"):
        DSprites(cache_dir=tmp_path).load_grid()
    assert calls == [1, 1]
    # a cache whose contents do not match its checksum
    np.savez_compressed(path, packed=grid, sha256=np.array("0" * 64))
    with pytest.warns(RuntimeWarning, match="checksum"):
        DSprites(cache_dir=tmp_path).load_grid()
    assert calls == [1, 1, 1]
    DSprites(cache_dir=tmp_path).load_grid()
    assert calls == [1, 1, 1]


def test_unwritable_cache_warns_and_keeps_the_grid(tmp_path, fake_grid):
    grid, calls = fake_grid
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    dataset = DSprites(cache_dir=not_a_folder)
    with pytest.warns(RuntimeWarning, match="could not cache"):
        dataset.load_grid()
    np.testing.assert_array_equal(dataset._packed.numpy(), grid)
    assert list(tmp_path.iterdir()) == [not_a_folder]


def test_cache_dir_from_environment(tmp_path, monkeypatch, fake_grid):
    monkeypatch.setenv("PYRO_HFVAE_CACHE", str(tmp_path / "from_env"))
    dataset = DSprites()
    assert dataset.cache_path.parent == tmp_path / "from_env"
    dataset.load_grid()
    assert dataset.cache_path.is_file()


def test_observations_unpack_grid_rows(tmp_path, fake_grid):
    grid, _ = fake_grid
    dataset = DSprites(cache_dir=tmp_path, return_factors=True)
    index = np.array([0, 7, 250, 251, FAKE_ROWS - 1])
    x = dataset.observations(index)
    assert x.dtype == torch.float32 and x.shape == (5, 1, 64, 64)
    expected = np.unpackbits(grid[index], axis=1).reshape(5, 1, 64, 64)
    np.testing.assert_array_equal(x.numpy(), expected)
    observation, factors, item = dataset[251]
    np.testing.assert_array_equal(observation.numpy(), expected[3])
    assert item == 251 and factors.tolist() == dataset.factors_of([251])[0].tolist()


# The official files, fabricated in their real layout (mostly empty images, a few rendered ones).
MARKED = np.array([0, 1, 33, 123456, NUM_IMAGES - 1])


def _official_arrays():
    grid = np.stack(np.unravel_index(np.arange(NUM_IMAGES), (3, 6, 40, 32, 32)), axis=-1)
    classes = np.concatenate([np.zeros((NUM_IMAGES, 1), dtype=np.int64), grid], axis=1)
    return classes, classes.astype(np.float64)


def _write_official_hdf5(path, classes=None, image_shape=(NUM_IMAGES, 64, 64)):
    h5py = pytest.importorskip("h5py")
    official_classes, values = _official_arrays()
    classes = official_classes if classes is None else classes
    with h5py.File(path, "w") as file:
        images = file.create_dataset(
            "imgs",
            shape=image_shape,
            dtype=np.uint8,
            chunks=(min(256, image_shape[0]), 64, 64),
            compression="gzip",
        )
        if image_shape[0] == NUM_IMAGES:
            for index in MARKED:
                images[index] = rendering.render_images(classes[index : index + 1, 1:])[0]
        file.create_dataset("latents/classes", data=classes)
        file.create_dataset("latents/values", data=values)


def test_official_hdf5_file(tmp_path):
    path = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5"
    _write_official_hdf5(path)
    dataset = DSprites(path, return_factors=True)
    factors = dataset.factors_of(MARKED)
    np.testing.assert_array_equal(dataset.render(factors), DSprites().render(factors))
    np.testing.assert_array_equal(
        dataset.observations(MARKED)[:, 0].numpy(), DSprites().render(factors)
    )
    assert dataset.observations([2, 34]).sum() == 0
    x, f, i = dataset[123456]
    assert i == 123456 and x.sum() > 0 and f.tolist() == factors[3].tolist()
    sampled = dataset.sample_observations_from_factors(factors, random_state=0)
    np.testing.assert_array_equal(sampled[:, 0].numpy(), DSprites().render(factors))


def test_official_hdf5_wrong_layout(tmp_path):
    classes, _ = _official_arrays()
    shuffled = classes[::-1].copy()
    path = tmp_path / "shuffled.hdf5"
    _write_official_hdf5(path, classes=shuffled)
    with pytest.raises(ValueError, match="row-major order"):
        DSprites(path).load_grid()
    path = tmp_path / "small.hdf5"
    _write_official_hdf5(path, image_shape=(100, 64, 64))
    with pytest.raises(ValueError, match=r"expected imgs of shape \(737280, 64, 64\)"):
        DSprites(path).load_grid()


@pytest.mark.slow
def test_official_npz_file(tmp_path):
    classes, values = _official_arrays()
    path = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    rows = 16384
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for key, array in (("latents_classes", classes), ("latents_values", values)):
            with archive.open(key + ".npy", "w") as member:
                np.lib.format.write_array(member, array)
        with archive.open("imgs.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "|u1", "fortran_order": False, "shape": (NUM_IMAGES, 64, 64)}
            )
            for start in range(0, NUM_IMAGES, rows):
                block = np.zeros((rows, 64, 64), dtype=np.uint8)
                marked = MARKED[(MARKED >= start) & (MARKED < start + rows)]
                block[marked - start] = rendering.render_images(classes[marked, 1:])
                member.write(block.tobytes())
    with pytest.raises(ValueError, match="MD5"):
        DSprites(path)
    dataset = DSprites(path, verify_md5=False)
    factors = dataset.factors_of(MARKED)
    np.testing.assert_array_equal(
        dataset.observations(MARKED)[:, 0].numpy(), DSprites().render(factors)
    )
    assert dataset.observations([2, 34]).sum() == 0


def test_official_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        DSprites(tmp_path / "missing.npz")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, images=np.zeros((2, 64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match="MD5 7da33b31b13a06f4b04a70402ce90c2e"):
        DSprites(wrong)
    with pytest.raises(ValueError, match="keys imgs, latents_classes and latents_values"):
        DSprites(wrong, verify_md5=False).load_grid()
    classes, values = _official_arrays()
    small = tmp_path / "small.npz"
    np.savez(
        small,
        imgs=np.zeros((2, 64, 64), dtype=np.uint8),
        latents_classes=classes,
        latents_values=values,
    )
    with pytest.raises(ValueError, match=r"expected imgs of shape \(737280, 64, 64\)"):
        DSprites(small, verify_md5=False).load_grid()
    np.savez(
        small,
        imgs=np.zeros((2, 64, 64), dtype=np.uint8),
        latents_classes=classes[:10],
        latents_values=values,
    )
    with pytest.raises(ValueError, match="latent classes of shape"):
        DSprites(small, verify_md5=False).load_grid()
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match="not one"):
        DSprites(text, verify_md5=False).load_grid()
    other = tmp_path / "dsprites.pkl"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.npz or \.hdf5"):
        DSprites(other).load_grid()


@pytest.mark.slow
def test_full_grid(tmp_path):
    dataset = DSprites(cache_dir=tmp_path)
    dataset.load_grid()
    packed = dataset._packed.numpy()
    counts = np.unpackbits(packed, axis=1).sum(axis=1, dtype=np.int64)
    fraction = counts / 4096
    assert abs(fraction.mean() - PUBLISHED_MEAN) < 1e-4
    assert abs(np.sqrt(fraction * (1 - fraction)).mean() - PUBLISHED_IMAGE_STD) < 1e-4
    index = np.random.default_rng(0).integers(0, NUM_IMAGES, 2000)
    np.testing.assert_array_equal(
        dataset.observations(index)[:, 0].numpy(), dataset.render(dataset.factors_of(index))
    )
    reloaded = DSprites(cache_dir=tmp_path)
    reloaded.load_grid()
    assert torch.equal(reloaded._packed, dataset._packed)
