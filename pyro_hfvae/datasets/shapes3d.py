"""3DShapes, read from the ``3dshapes.h5`` file a user has."""

import os
from pathlib import Path

import numpy as np
import torch

from .ground_truth_dataset import GroundTruthDataset
from .observation_dataset import IndicesLike


class Shapes3D(GroundTruthDataset):
    """
    3DShapes [1]: 480,000 RGB 64 x 64 renders of a shape in a room over six factors, as
    ``(3, 64, 64)`` float32 images in [0, 1], read (never downloaded) from ``3dshapes.h5``
    (datasets ``images`` ``(480000, 64, 64, 3)`` uint8 and ``labels`` ``(480000, 6)`` float64).

    The class of each factor is the rank of its label value among the file's distinct values of that
    factor; the official file gives floor_hue, wall_hue, object_hue, scale, shape and orientation
    with 10, 10, 10, 8, 4 and 15 classes. The rows must cover that grid exactly once, in any order
    (the official file is in row-major order). All images are read into memory (5.9 GB for the
    official file), channels first, on ``device``.

    :param path: the ``3dshapes.h5`` file.
    :type path: str or os.PathLike
    :param bool return_factors: make items ``(observation, factors, index)``.
    :param device: where the images are kept and observations are returned (default CPU).
    :type device: str or torch.device or None

    References

    [1] Chris Burgess, Hyunjik Kim, "3D Shapes Dataset",
        https://github.com/deepmind/3dshapes-dataset/
    """

    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    observation_shape = (3, 64, 64)

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        return_factors: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(return_factors=return_factors, device=device)
        try:
            import h5py
        except ImportError as error:
            raise ImportError("reading 3dshapes.h5 needs h5py: pip install h5py") from error
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(
                f"expected the 3DShapes file (3dshapes.h5) at {self.path} but there is no such file"
            )
        try:
            file = h5py.File(self.path, "r")
        except OSError as error:
            raise ValueError(
                f"could not open {self.path} as an hdf5 file ({error}); expected 3dshapes.h5"
            ) from error
        with file:
            missing = [key for key in ("images", "labels") if key not in file]
            if missing:
                raise ValueError(
                    f"expected the datasets images and labels in {self.path} but found "
                    f"{sorted(file.keys())}; this is not 3dshapes.h5"
                )
            images, labels = file["images"], file["labels"][()]
            if images.ndim != 4 or images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8:
                raise ValueError(
                    f"expected images of shape (n, 64, 64, 3) and dtype uint8 in {self.path} but "
                    f"got shape {images.shape} and dtype {images.dtype}"
                )
            if labels.shape != (len(images), 6):
                raise ValueError(
                    f"expected labels of shape ({len(images)}, 6) in {self.path} but got shape "
                    f"{labels.shape}"
                )
            self._factors, self.factor_values = _label_classes(labels)
            self.factor_sizes = tuple(len(values) for values in self.factor_values)
            cells = np.ravel_multi_index(tuple(self._factors.T), self.factor_sizes)
            if len(images) != len(self) or np.unique(cells).size != len(self):
                raise ValueError(
                    f"expected the labels in {self.path} to cover the grid of their distinct "
                    f"values "
                    f"{self.factor_sizes} exactly once but {len(images)} rows cover "
                    f"{np.unique(cells).size} of its {len(self)} cells"
                )
            self._index_of_cell = np.empty(len(self), dtype=np.int64)
            self._index_of_cell[cells] = np.arange(len(self))
            # Channels first once, chunk by chunk (no second full copy), so that batches are plain
            # gathers.
            pixels = np.empty((len(images), 3, 64, 64), dtype=np.uint8)
            for start in range(0, len(images), 8192):
                pixels[start : start + 8192] = images[start : start + 8192].transpose(0, 3, 1, 2)
        self._images = torch.from_numpy(pixels).to(self.device)

    def index_of(self, factors: np.ndarray, random_state=None) -> np.ndarray:
        """
        Indices of the images showing ``factors`` (one image per factor tuple; ``random_state``
        unused).

        :param numpy.ndarray factors: int array of shape ``(n, 6)``.
        :returns: int64 array of shape ``(n,)``.
        :rtype: numpy.ndarray
        """
        return self._index_of_cell[super().index_of(factors)]

    def factors_of(self, index: IndicesLike) -> np.ndarray:
        """
        Factor classes of the images at ``index``.

        :param index: 1-D item indices.
        :type index: numpy.ndarray or torch.Tensor or list
        :returns: int64 array of shape ``(n, 6)``.
        :rtype: numpy.ndarray
        """
        return self._factors[self._index_array(index)]

    def render(self, factors: np.ndarray) -> np.ndarray:
        """
        The images showing ``factors``, as stored.

        :param numpy.ndarray factors: int array of shape ``(n, 6)``.
        :returns: uint8 array of shape ``(n, 64, 64, 3)``.
        :rtype: numpy.ndarray
        """
        index = torch.from_numpy(self.index_of(factors)).to(self.device)
        return self._images[index].permute(0, 2, 3, 1).cpu().numpy()

    def _observations(self, indices: torch.Tensor) -> torch.Tensor:
        return self._images[indices].to(torch.float32).div_(255)


def _label_classes(labels: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    # Per column: the sorted distinct values and each row's rank among them.
    values, classes = zip(*(np.unique(column, return_inverse=True) for column in labels.T))
    return np.stack(classes, axis=-1).astype(np.int64), tuple(values)
