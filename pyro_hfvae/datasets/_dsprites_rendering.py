"""
Exact vectorised renderer of the dSprites grid (the rules and how they are made fast are described
in :mod:`pyro_hfvae.datasets.dsprites`).
"""

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

SHAPE_NAMES = ("square", "ellipse", "heart")
FACTOR_SIZES = (3, 6, 40, 32, 32)
NUM_IMAGES = math.prod(FACTOR_SIZES)
IMAGE_SIZE = 64
PACKED_ROW_BYTES = IMAGE_SIZE * IMAGE_SIZE // 8
# Version of the rendering rules; a cache written under other rules is regenerated.
GRID_VERSION = 1
_CHUNK = 2048


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


SCALES = _read_only(np.linspace(0.5, 1.0, 6))
ORIENTATIONS = _read_only(np.linspace(0.0, 2 * np.pi, 40))
POSITIONS = _read_only(np.linspace(0.0, 1.0, 32))
_SQUARE_HALF_SIDE = 9.6
_ELLIPSE_SEMI_AXES = (12.77, 7.21)


def _heart_polygon() -> tuple[np.ndarray, np.ndarray]:
    t = 2 * np.pi * np.arange(400) / 400
    x = 0.5998 * (16 * np.sin(t) ** 3)
    y = 0.6619 * (13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)) + 1.4345
    return _read_only(x), _read_only(y)


class _MonotoneChain(NamedTuple):
    # Vertex heights in ascending order; the edge between sorted vertices k and k + 1 has endpoints
    # (xa[k], ya[k]) -> (xb[k], yb[k]) in polygon order, so crossings are computed as a loop would.
    heights: np.ndarray
    xa: np.ndarray
    ya: np.ndarray
    xb: np.ndarray
    yb: np.ndarray


def _monotone_chains(x: np.ndarray, y: np.ndarray) -> tuple[_MonotoneChain, ...]:
    x_next, y_next = np.roll(x, -1), np.roll(y, -1)
    direction = np.sign(y_next - y)
    runs, run, run_direction = [], [], 0
    for edge, d in enumerate(direction):
        if d != 0 and run_direction != 0 and d != run_direction:
            runs.append((run_direction, run))
            run, run_direction = [], 0
        run.append(edge)
        run_direction = d if d != 0 else run_direction
    runs.append((run_direction, run))
    chains = []
    for run_direction, run in runs:
        edges = np.array(run if run_direction >= 0 else run[::-1])
        low = np.minimum(y[edges], y_next[edges])
        heights = np.append(low, max(y[edges[-1]], y_next[edges[-1]]))
        assert np.all(np.diff(heights) >= 0)
        arrays = (heights, x[edges], y[edges], x_next[edges], y_next[edges])
        chains.append(_MonotoneChain(*(_read_only(a) for a in arrays)))
    return tuple(chains)


_HEART_X, _HEART_Y = _heart_polygon()
_HEART_CHAINS = _monotone_chains(_HEART_X, _HEART_Y)
# Largest distance of a shape point from the sprite centre at scale 1 (sizes the render window).
_SHAPE_RADII = (
    _SQUARE_HALF_SIDE * math.sqrt(2),
    max(_ELLIPSE_SEMI_AXES),
    float(np.hypot(_HEART_X, _HEART_Y).max()),
)


def _inside_heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Crossing-number test (a ray towards +u) with exactly the edge expression of a per-edge loop.
    # Outside the polygon's bounding box (with a margin for rounding in the crossing abscissa) the
    # number of crossings is even, so only the points inside it are tested.
    candidate = (
        (v >= _HEART_Y.min())
        & (v < _HEART_Y.max())
        & (u > _HEART_X.min() - 1e-6)
        & (u < _HEART_X.max() + 1e-6)
    )
    uc, vc = u[candidate], v[candidate]
    parity = np.zeros(uc.shape, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for chain in _HEART_CHAINS:
            k = np.searchsorted(chain.heights, vc, side="right") - 1
            straddles = (k >= 0) & (k < len(chain.xa))
            k = np.clip(k, 0, len(chain.xa) - 1)
            xa, ya = chain.xa[k], chain.ya[k]
            crossing = (chain.xb[k] - xa) * (vc - ya) / (chain.yb[k] - ya) + xa
            parity ^= straddles & (uc < crossing)
    inside = np.zeros(u.shape, dtype=bool)
    inside[candidate] = parity
    return inside


def _render_shape(shape: int, factors: np.ndarray, out: np.ndarray) -> None:
    # Render sprites of one shape (factors (n, 5)) into the zeroed canvases out (n, 64, 64).
    scale = SCALES[factors[:, 1]]
    angle = ORIENTATIONS[factors[:, 2]]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    cx = 16 + 32 * POSITIONS[factors[:, 3]]
    cy = 16 + 32 * POSITIONS[factors[:, 4]]
    half = math.ceil(_SHAPE_RADII[shape] * scale.max()) + 1
    window = np.arange(2 * half + 1)
    cols = np.floor(cx).astype(np.int64)[:, None] - half + window
    rows = np.floor(cy).astype(np.int64)[:, None] - half + window
    dx = ((cols + 0.5) - cx[:, None])[:, None, :]
    dy = (-((rows + 0.5) - cy[:, None]))[:, :, None]
    u = (dx * cos + dy * sin) / scale[:, None, None]
    v = ((-dx) * sin + dy * cos) / scale[:, None, None]
    if shape == 0:
        inside = (np.abs(u) < _SQUARE_HALF_SIDE) & (np.abs(v) < _SQUARE_HALF_SIDE)
    elif shape == 1:
        a, b = u / _ELLIPSE_SEMI_AXES[0], v / _ELLIPSE_SEMI_AXES[1]
        inside = a * a + b * b < 1
    else:
        inside = _inside_heart(u, v)
    n = np.arange(len(factors))[:, None, None]
    out[n, rows[:, :, None], cols[:, None, :]] = inside


def render_images(factors: np.ndarray) -> np.ndarray:
    # factors: validated int64 (n, 5) -> uint8 (n, 64, 64) in {0, 1}
    images = np.zeros((len(factors), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, len(factors), _CHUNK):
        chunk = factors[start : start + _CHUNK]
        canvas = images[start : start + _CHUNK]
        for shape in range(3):
            mask = chunk[:, 0] == shape
            if mask.any():
                block = np.zeros((int(mask.sum()), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
                _render_shape(shape, chunk[mask], block)
                canvas[mask] = block
    return images


def render_grid() -> np.ndarray:
    # The whole grid, bit-packed row by row: uint8 (737280, 512). One task per (shape, scale,
    # orientation) block of 32 x 32 positions; numpy releases the GIL, so threads use every core.
    packed = np.empty((NUM_IMAGES, PACKED_ROW_BYTES), dtype=np.uint8)
    block = FACTOR_SIZES[3] * FACTOR_SIZES[4]
    positions = np.stack(np.meshgrid(np.arange(32), np.arange(32), indexing="ij"), -1).reshape(
        -1, 2
    )

    def render_block(b: int) -> None:
        shape, rest = divmod(b, FACTOR_SIZES[1] * FACTOR_SIZES[2])
        scale, orientation = divmod(rest, FACTOR_SIZES[2])
        factors = np.empty((block, 5), dtype=np.int64)
        factors[:, :3] = shape, scale, orientation
        factors[:, 3:] = positions
        images = np.zeros((block, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        _render_shape(shape, factors, images)
        packed[b * block : (b + 1) * block] = np.packbits(images.reshape(block, -1), axis=1)

    # A few threads suffice (each holds ~100 MB of temporaries).
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(render_block, range(NUM_IMAGES // block)))
    return packed
