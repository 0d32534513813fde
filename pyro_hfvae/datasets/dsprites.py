"""
dSprites, rendered exactly without the official file, or read from the official file.

The 737,280 binary 64 x 64 images are the grid shape {square, ellipse, heart} x scale
``linspace(0.5, 1, 6)`` x orientation ``linspace(0, 2 pi, 40)`` x posX ``linspace(0, 1, 32)`` x posY
``linspace(0, 1, 32)``, in row-major order (posY fastest). The renderer follows rules fitted to
genuine frames (90 % of them pixel-exact, none more than 4 pixels off; whole-grid pixel mean
0.042490 against the published 0.0424944):

- pixel (row ``i``, column ``j``) has centre ``(x, y) = (j + 0.5, i + 0.5)``, ``y`` growing
  downward, and is 1 iff that centre is strictly inside the shape;
- the sprite centre is ``(16 + 32 posX, 16 + 32 posY)``;
- with ``dx = x - cx`` and ``dy = -(y - cy)`` the shape frame is
  ``u = (dx cos t + dy sin t) / scale``, ``v = (-dx sin t + dy cos t) / scale`` (``t`` rotates
  counter-clockwise on screen);
- square ``|u| < 9.6`` and ``|v| < 9.6``; ellipse ``(u / 12.77)^2 + (v / 7.21)^2 < 1``; heart:
  inside (crossing-number rule) the polygon through the 400 points ``t = 2 pi k / 400`` of
  ``(0.5998 * 16 sin^3 t, 0.6619 (13 cos t - 5 cos 2t - 2 cos 3t - cos 4t) + 1.4345)``.

How it is fast yet exact: each image is rendered only in a window around its centre that holds the
whole sprite (pixels outside are provably 0), for thousands of images at once with numpy
broadcasting, evaluating the very floating-point expressions above pixel by pixel (so the result is
bit-identical to a per-pixel loop; positions are not shifted copies, since the centres move by 32/31
pixels). The heart polygon is split into its four chains monotone in ``v``; a horizontal ray from a
pixel crosses each chain at most once, at the edge found by a binary search over the chain's vertex
heights, so the crossing test costs four searches per pixel instead of 400 edge tests. The full grid
is generated in blocks of one (shape, scale, orientation) on all CPU cores (about 15 s on two), then
cached on disk bit-packed (``numpy.packbits``, compressed, 6 MB) with a SHA-256 checksum.

References

[1] Loic Matthey, Irina Higgins, Demis Hassabis, Alexander Lerchner,
    "dSprites: Disentanglement testing Sprites dataset", https://github.com/deepmind/dsprites-dataset/
"""

import hashlib
import logging
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from pyro_hfvae.util import atomic_file

from . import _dsprites_rendering as rendering
from .ground_truth_dataset import GroundTruthDataset, RandomStateLike

logger = logging.getLogger(__name__)

OFFICIAL_NPZ_MD5 = "7da33b31b13a06f4b04a70402ce90c2e"


def default_cache_dir() -> Path:
    """
    Where generated data are cached: ``$PYRO_HFVAE_CACHE`` if set, else ``~/.cache/pyro_hfvae``.

    :rtype: pathlib.Path
    """
    return Path(os.environ.get("PYRO_HFVAE_CACHE", "~/.cache/pyro_hfvae")).expanduser()


class DSprites(GroundTruthDataset):
    """
    dSprites [1]: 737,280 binary 64 x 64 sprites over the factors shape (square, ellipse, heart),
    scale (6), orientation (40), posX (32) and posY (32), rendered exactly without any file (see the
    module description), or read from the official ``.npz`` or ``.hdf5`` file when ``path`` is
    given.

    The full grid is needed only for :meth:`observations`, :meth:`batches` and item access; it is
    built on first use (about 15 s on two cores) and cached in ``cache_dir`` (about 6 MB), or read
    from ``path``. :meth:`render` and :meth:`sample_observations_from_factors` render on demand
    without it. The grid is held bit-packed (377 MB) on ``device`` and unpacked there per batch, so
    with ``device="cuda"`` a training loop reads batches straight from GPU memory (call
    :meth:`load_grid` before starting :class:`~torch.utils.data.DataLoader` workers, so that they
    share one copy).

    >>> dataset = DSprites()
    >>> dataset.factor_sizes, len(dataset)
    ((3, 6, 40, 32, 32), 737280)
    >>> image = dataset.render([[0, 5, 0, 0, 0]])[0]  # the largest square, top left
    >>> int(image.sum()), bool(image[6:26, 6:26].all())
    (400, True)

    :param path: the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (keys ``imgs``,
        ``latents_values``, ``latents_classes``, ``metadata``) or its ``.hdf5`` version (keys
        ``imgs``, ``latents/classes``, ``latents/values``); ``None`` renders the data set.
    :type path: str or os.PathLike or None
    :param cache_dir: folder for the rendered grid (default :func:`default_cache_dir`).
    :type cache_dir: str or os.PathLike or None
    :param bool verify_md5: check the ``.npz`` file's MD5 against the official one
        (``7da33b31b13a06f4b04a70402ce90c2e``); the ``.hdf5`` file is checked by its layout only.
    :param bool return_factors: make items ``(observation, factors, index)``.
    :param device: where the grid is kept and observations are returned (default CPU).
    :type device: str or torch.device or None

    References

    [1] Loic Matthey, Irina Higgins, Demis Hassabis, Alexander Lerchner,
        "dSprites: Disentanglement testing Sprites dataset", https://github.com/deepmind/dsprites-dataset/
    """

    factor_names = ("shape", "scale", "orientation", "posX", "posY")
    factor_sizes = rendering.FACTOR_SIZES
    observation_shape = (1, rendering.IMAGE_SIZE, rendering.IMAGE_SIZE)
    #: Names of the shape classes.
    shape_names = rendering.SHAPE_NAMES

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        verify_md5: bool = True,
        return_factors: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(return_factors=return_factors, device=device)
        self.path = None if path is None else Path(path)
        if self.path is not None and not self.path.is_file():
            raise FileNotFoundError(
                f"expected the official dSprites file at {self.path} but there is no "
                f"such file; pass path=None to render dSprites without it"
            )
        if self.path is not None and verify_md5 and self.path.suffix == ".npz":
            digest = _file_digest(self.path, hashlib.md5())
            if digest != OFFICIAL_NPZ_MD5:
                raise ValueError(
                    f"expected the official dSprites npz (MD5 {OFFICIAL_NPZ_MD5}) at {self.path} "
                    f"but its MD5 is {digest}; pass verify_md5=False to read a modified copy"
                )
        self.cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
        self._packed = None
        # row b: the 8 pixels (most significant bit first) that the packed byte b holds, as float32
        bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)
        self._unpack_table = torch.from_numpy(bits).to(self.device)

    @property
    def factor_values(self) -> tuple[np.ndarray, ...]:
        """
        The value of each factor class, as in the official ``latents_values`` (shape 1, 2, 3;
        scale ``linspace(0.5, 1, 6)``; orientation ``linspace(0, 2 pi, 40)``; positions
        ``linspace(0, 1, 32)``).
        """
        return (
            np.arange(1.0, 4.0),
            rendering.SCALES.copy(),
            rendering.ORIENTATIONS.copy(),
            rendering.POSITIONS.copy(),
            rendering.POSITIONS.copy(),
        )

    @property
    def cache_path(self) -> Path:
        """The file caching the rendered grid."""
        return self.cache_dir / f"dsprites_grid_v{rendering.GRID_VERSION}.npz"

    def load_grid(self) -> None:
        """
        Make the whole grid available now (read from ``path``, else from the cache, else rendered
        and cached), instead of at the first access.
        """
        if self._packed is not None:
            return
        if self.path is not None:
            packed = _read_official_file(self.path)
        else:
            packed = self._read_cache()
            if packed is None:
                logger.info("rendering the dSprites grid (about 15 s on two cores)")
                packed = rendering.render_grid()
                self._write_cache(packed)
        self._packed = torch.from_numpy(packed).to(self.device)

    def render(self, factors: np.ndarray) -> np.ndarray:
        """
        Images showing ``factors`` (classes of shape, scale, orientation, posX, posY), rendered (or
        read from the official file when ``path`` was given).

        :param numpy.ndarray factors: int array of shape ``(n, 5)``.
        :returns: uint8 array of shape ``(n, 64, 64)`` with values in {0, 1}.
        :rtype: numpy.ndarray
        """
        factors = self._check_factors(factors)
        if self.path is None:
            return rendering.render_images(factors)
        index = torch.from_numpy(self.index_of(factors)).to(self.device)
        return self._observations(index)[:, 0].to(device="cpu", dtype=torch.uint8).numpy()

    def sample_observations_from_factors(
        self, factors: np.ndarray, random_state: RandomStateLike
    ) -> torch.Tensor:
        """
        Images showing ``factors`` as float32 ``(n, 1, 64, 64)`` on :attr:`device`: read from the
        grid where it is loaded, else rendered (the same pixels), so the metrics never need the full
        grid.

        :param numpy.ndarray factors: int array of shape ``(n, 5)``.
        :param random_state: unused (each factor tuple has one image); kept for the protocol.
        :rtype: torch.Tensor
        """
        if self._packed is not None or self.path is not None:
            return super().sample_observations_from_factors(factors, random_state)
        images = torch.from_numpy(self.render(factors)).to(self.device)
        return images.unsqueeze(1).to(torch.float32)

    def _observations(self, indices: torch.Tensor) -> torch.Tensor:
        self.load_grid()
        # One table lookup unpacks and converts to float32 (faster than shifts and masks).
        pixels = torch.nn.functional.embedding(self._packed[indices].long(), self._unpack_table)
        return pixels.reshape((-1,) + self.observation_shape)

    def _read_cache(self) -> np.ndarray | None:
        path = self.cache_path
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as cache:
                packed = cache["packed"]
                checksum = str(cache["sha256"])
            if (
                packed.shape != (rendering.NUM_IMAGES, rendering.PACKED_ROW_BYTES)
                or packed.dtype != np.uint8
            ):
                raise ValueError(
                    f"expected a uint8 array of shape "
                    f"{(rendering.NUM_IMAGES, rendering.PACKED_ROW_BYTES)} "
                    f"but got {packed.dtype} {packed.shape}"
                )
            if hashlib.sha256(packed).hexdigest() != checksum:
                raise ValueError("its SHA-256 checksum does not match its contents")
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as error:
            warnings.warn(
                f"the dSprites grid cache {path} is corrupt ({error}); rendering it again",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return packed

    def _write_cache(self, packed: np.ndarray) -> None:
        try:
            with atomic_file(self.cache_path) as file:
                np.savez_compressed(file, packed=packed, sha256=np.array(hashlib.sha256(packed).hexdigest()))
        except OSError as error:
            warnings.warn(
                f"could not cache the dSprites grid in {self.cache_dir} ({error}); it will be "
                f"rendered again next time (set cache_dir or PYRO_HFVAE_CACHE to a writable "
                f"folder)",
                RuntimeWarning,
                stacklevel=3,
            )


def _file_digest(path: Path, digest) -> str:
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_official_classes(classes: np.ndarray, path: Path) -> None:
    expected_shape = (rendering.NUM_IMAGES, 6)
    if classes.shape != expected_shape:
        raise ValueError(
            f"expected latent classes of shape {expected_shape} in {path} but got shape "
            f"{classes.shape}; this is not the official dSprites file"
        )
    grid = np.stack(
        np.unravel_index(np.arange(rendering.NUM_IMAGES), rendering.FACTOR_SIZES), axis=-1
    )
    if (classes[:, 0] != 0).any() or not np.array_equal(classes[:, 1:], grid):
        raise ValueError(
            f"expected the latent classes in {path} to list colour 0 and the (shape, scale, "
            f"orientation, posX, posY) grid in row-major order, as the official file does, but "
            f"they do not; re-download the official file"
        )


def _pack_images(chunks, path: Path) -> np.ndarray:
    # Pack (rows, 64, 64) image chunks, in order, into (737280, 512) bit rows.
    packed = np.empty((rendering.NUM_IMAGES, rendering.PACKED_ROW_BYTES), dtype=np.uint8)
    row_bytes = rendering.IMAGE_SIZE * rendering.IMAGE_SIZE
    start = 0
    for chunk in chunks:
        if chunk.size % row_bytes or start + chunk.size // row_bytes > rendering.NUM_IMAGES:
            raise ValueError(
                f"expected {rendering.NUM_IMAGES} images of 64 x 64 pixels in {path} but the "
                f"image data end mid-image or run past them; the file is damaged"
            )
        chunk = chunk.reshape(-1, row_bytes)
        if chunk.max(initial=0) > 1:
            raise ValueError(
                f"expected binary images (0 or 1) in {path} but found the value {chunk.max()}"
            )
        packed[start : start + len(chunk)] = np.packbits(chunk, axis=1)
        start += len(chunk)
    if start != rendering.NUM_IMAGES:
        raise ValueError(
            f"expected {rendering.NUM_IMAGES} images in {path} but the image data end after "
            f"{start}; the file is truncated"
        )
    return packed


def _read_official_file(path: Path) -> np.ndarray:
    image_shape = (rendering.NUM_IMAGES, rendering.IMAGE_SIZE, rendering.IMAGE_SIZE)
    rows = 1 << 14
    if path.suffix == ".npz":
        if not zipfile.is_zipfile(path):
            raise ValueError(
                f"expected an npz (zip) archive at {path} but it is not one; expected the "
                f"official dSprites npz"
            )
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = {"imgs", "latents_classes", "latents_values"} - set(archive.files)
                if missing:
                    raise ValueError(
                        f"expected the keys imgs, latents_classes and latents_values in {path} "
                        f"but found {sorted(archive.files)}; this is not the official dSprites npz"
                    )
                _check_official_classes(archive["latents_classes"], path)
            with zipfile.ZipFile(path) as archive, archive.open("imgs.npy") as member:
                version = np.lib.format.read_magic(member)
                read_header = {
                    (1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0,
                }[version]
                shape, fortran_order, dtype = read_header(member)
                if shape != image_shape or dtype != np.uint8 or fortran_order:
                    raise ValueError(
                        f"expected imgs of shape {image_shape} and dtype uint8 in {path} but got "
                        f"shape {shape} and dtype {dtype}"
                    )
                row_bytes = rendering.IMAGE_SIZE * rendering.IMAGE_SIZE
                chunks = (
                    np.frombuffer(member.read(rows * row_bytes), dtype=np.uint8)
                    for _ in range(0, rendering.NUM_IMAGES, rows)
                )
                return _pack_images(chunks, path)
        except (zipfile.BadZipFile, KeyError, EOFError) as error:
            raise ValueError(
                f"could not read {path} as an npz file ({error}); expected the official "
                f"dSprites npz"
            ) from error
    if path.suffix in (".h5", ".hdf5"):
        try:
            import h5py
        except ImportError as error:
            raise ImportError(
                "reading the dSprites hdf5 file needs h5py: pip install h5py"
            ) from error
        try:
            file = h5py.File(path, "r")
        except OSError as error:
            raise ValueError(
                f"could not open {path} as an hdf5 file ({error}); expected the official "
                f"dSprites hdf5"
            ) from error
        with file:
            missing = [
                key for key in ("imgs", "latents/classes", "latents/values") if key not in file
            ]
            if missing:
                raise ValueError(
                    f"expected the datasets imgs, latents/classes and latents/values in {path} "
                    f"but {missing} are missing; this is not the official dSprites hdf5"
                )
            _check_official_classes(file["latents/classes"][()], path)
            images = file["imgs"]
            if images.shape != image_shape or images.dtype != np.uint8:
                raise ValueError(
                    f"expected imgs of shape {image_shape} and dtype uint8 in {path} but got "
                    f"shape {images.shape} and dtype {images.dtype}"
                )
            return _pack_images(
                (images[start : start + rows] for start in range(0, rendering.NUM_IMAGES, rows)),
                path,
            )
    raise ValueError(f"expected the official dSprites file ending in .npz or .hdf5 but got {path}")
