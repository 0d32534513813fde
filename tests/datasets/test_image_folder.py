import numpy as np
import pytest
import torch

from pyro_hfvae.datasets import ImageFolder

Image = pytest.importorskip("PIL.Image")

COLOURS = [(255, 0, 0), (0, 128, 255), (10, 20, 30)]


@pytest.fixture
def image_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    for k, colour in enumerate(COLOURS):
        image = np.zeros((90, 120, 3), dtype=np.uint8)  # height 90, width 120
        image[:, :] = colour
        image[:, :15] = 255 - np.array(colour)  # a band that a centre crop of 90 removes
        folder = tmp_path / "sub" if k == 2 else tmp_path
        Image.fromarray(image).save(folder / f"{k:06d}.{'png' if k != 1 else 'bmp'}")
    (tmp_path / "list_attr_celeba.txt").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize("in_memory", [False, True])
def test_image_folder(image_folder, in_memory):
    dataset = ImageFolder(image_folder, size=(16, 24), crop=90, in_memory=in_memory)
    assert len(dataset) == 3 and dataset.observation_shape == (3, 16, 24)
    assert [p.name for p in dataset.paths] == ["000000.png", "000001.bmp", "000002.png"]
    x = dataset.observations([2, 0])
    assert x.dtype == torch.float32 and x.shape == (2, 3, 16, 24)
    expected = torch.tensor([COLOURS[2], COLOURS[0]], dtype=torch.float32)[:, :, None, None] / 255
    torch.testing.assert_close(x, expected.expand_as(x))
    assert dataset[1].shape == (3, 16, 24)
    seen = torch.cat([idx for _, idx in dataset.batches(2, torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == [0, 1, 2]


def test_image_folder_grey_and_uncropped(image_folder):
    dataset = ImageFolder(image_folder, size=8, mode="L")
    x = dataset.observations([0])
    assert x.shape == (1, 1, 8, 8)
    # the complementary band on the left survives without a crop
    assert x[0, 0, :, 0].mean() > x[0, 0, :, -1].mean()


def test_image_folder_errors(tmp_path, image_folder):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ImageFolder(tmp_path / "missing")
    empty = tmp_path / "texts"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"found none \(file types there: \['.txt'\]\)"):
        ImageFolder(empty)
    with pytest.raises(ValueError, match="mode 'RGB' or 'L'"):
        ImageFolder(image_folder, mode="CMYK")
    with pytest.raises(ValueError, match="at least 100 pixels"):
        ImageFolder(image_folder, crop=100).observations([0])
    (image_folder / "000003.jpg").write_bytes(b"garbage")
    dataset = ImageFolder(image_folder)
    garbage = [p.name for p in dataset.paths].index("000003.jpg")
    with pytest.raises(ValueError, match="could not read the image .*000003.jpg"):
        dataset.observations([garbage])
    with pytest.raises(ValueError, match="000003.jpg"):
        ImageFolder(image_folder, in_memory=True)
