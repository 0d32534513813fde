"""A folder of images (CelebA-style), centre-cropped and resized with Pillow."""

import logging
import os
from pathlib import Path

import numpy as np
import torch

from .observation_dataset import ObservationDataset

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


class ImageFolder(ObservationDataset):
    """
    The images in a folder and its subfolders (e.g. CelebA's ``img_align_celeba``), in sorted path
    order, as float32 ``(channels, height, width)`` tensors in [0, 1]: each is optionally
    centre-cropped to a ``crop`` x ``crop`` square, then resized to ``size`` (bilinear, with
    Pillow). The images have no known factors.

    By default each access decodes its images from disk (use a
    :class:`~torch.utils.data.DataLoader` with workers); ``in_memory=True`` decodes them all once
    into a uint8 tensor on ``device`` (CelebA at 64 x 64: 2.5 GB), for the fast :meth:`batches`.

    :param root: the folder.
    :type root: str or os.PathLike
    :param size: output ``(height, width)``, or one int for square images.
    :type size: int or tuple
    :param crop: side of the centre square cropped before resizing (CelebA is often cropped to
        140 or 148); ``None`` keeps the whole image.
    :type crop: int or None
    :param str mode: Pillow mode, ``"RGB"`` (3 channels) or ``"L"`` (grey, 1 channel).
    :param bool in_memory: decode all images once at construction.
    :param device: where observations are returned (and the images kept, when in memory).
    :type device: str or torch.device or None
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        size: int | tuple[int, int] = 64,
        crop: int | None = None,
        mode: str = "RGB",
        in_memory: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(device=device)
        try:
            import PIL.Image  # noqa: F401
        except ImportError as error:
            raise ImportError("reading image folders needs Pillow: pip install pillow") from error
        if mode not in ("RGB", "L"):
            raise ValueError(f"expected mode 'RGB' or 'L' but got {mode!r}")
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        if height < 1 or width < 1 or (crop is not None and crop < 1):
            raise ValueError(f"expected positive sizes but got size={size!r}, crop={crop!r}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"expected a folder of images at {self.root} but there is no such folder"
            )
        self.paths = tuple(
            sorted(
                p
                for p in self.root.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
        )
        if not self.paths:
            found = sorted(
                {p.suffix.lower() or p.name for p in self.root.rglob("*") if p.is_file()}
            )[:20]
            raise FileNotFoundError(
                f"expected image files ({', '.join(IMAGE_SUFFIXES)}) in {self.root} but "
                f"found none (file types there: {found})"
            )
        self.size, self.crop, self.mode = (height, width), crop, mode
        self.observation_shape = (3 if mode == "RGB" else 1, height, width)
        self._images = None
        if in_memory:
            logger.info("decoding %d images from %s", len(self.paths), self.root)
            self._images = torch.from_numpy(self._decode_all(self.paths)).to(self.device)

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, path: Path) -> np.ndarray:
        # uint8 (channels, height, width)
        import PIL.Image

        try:
            with PIL.Image.open(path) as image:
                image = image.convert(self.mode)
        except (OSError, PIL.Image.DecompressionBombError) as error:
            raise ValueError(
                f"could not read the image {path} ({error}); remove or replace the file"
            ) from error
        if self.crop is not None:
            if min(image.size) < self.crop:
                raise ValueError(
                    f"expected images at least {self.crop} pixels on each side for "
                    f"crop={self.crop} "
                    f"but {path} is {image.size[0]} x {image.size[1]}"
                )
            left, top = (image.size[0] - self.crop) // 2, (image.size[1] - self.crop) // 2
            image = image.crop((left, top, left + self.crop, top + self.crop))
        image = image.resize(self.size[::-1], PIL.Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
        return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)

    def _decode_all(self, paths: list[Path]) -> np.ndarray:
        pixels = np.empty((len(paths),) + self.observation_shape, dtype=np.uint8)
        for k, path in enumerate(paths):
            pixels[k] = self._decode(path)
        return pixels

    def _observations(self, indices: torch.Tensor) -> torch.Tensor:
        if self._images is not None:
            pixels = self._images[indices]
        else:
            pixels = torch.from_numpy(
                self._decode_all([self.paths[i] for i in indices.tolist()])
            ).to(self.device)
        return pixels.to(torch.float32).div_(255)
