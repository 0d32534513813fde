# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Shared helpers of the figure modules: atomic PNG writing and image mosaics (private)."""
import os

import numpy as np
import torch
from matplotlib.figure import Figure

from pyro_hfvae.util import atomic_file


def save_figure(figure: Figure, path: str | os.PathLike | None, dpi: int = 110) -> None:
    """Writes ``figure`` to ``path`` atomically (format from the suffix); nothing when ``path`` is ``None``."""
    if path is None:
        return
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    with atomic_file(path) as file:
        figure.savefig(file, format=suffix, dpi=dpi, bbox_inches="tight")


def is_image_shape(shape) -> bool:
    """Whether observations of this shape are images ``(channels, height, width)`` with 1 or 3 channels."""
    return len(shape) == 3 and shape[0] in (1, 3)


def mosaic(images: torch.Tensor, pad: int = 2) -> np.ndarray:
    """
    Tiles images ``(rows, cols, C, H, W)`` with values in [0, 1] into one array, ``(R, C)``
    for grey images or ``(R, C, 3)`` for colour, with grey padding between tiles.
    """
    images = images.detach().to("cpu", torch.float32).clamp(0, 1).numpy()
    rows, cols, channels, height, width = images.shape
    canvas = np.full((channels, rows * (height + pad) + pad, cols * (width + pad) + pad), 0.5, dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            canvas[:, top:top + height, left:left + width] = images[r, c]
    return canvas[0] if channels == 1 else canvas.transpose(1, 2, 0)


def row_centres(rows: int, height: int, pad: int = 2) -> list[float]:
    """Vertical centres of the rows of :func:`mosaic`, for tick labels."""
    return [pad + r * (height + pad) + height / 2 for r in range(rows)]
