"""Reader for the IDX format of MNIST and Fashion-MNIST."""

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

# IDX type code -> big-endian numpy dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """
    Read an IDX file (``gzip``-compressed or not, told apart by its content, not its name).

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "labels-idx1-ubyte"
    ...     _ = path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))  # ubyte, rank 1, size 3
    ...     read_idx(path)
    array([7, 2, 1], dtype=uint8)

    :param path: the file.
    :type path: str or os.PathLike
    :returns: the array, in native byte order.
    :rtype: numpy.ndarray
    """
    path = Path(path)
    with open(path, "rb") as file:
        compressed = file.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rb") if compressed else open(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(
            f"could not decompress {path} ({error}); the gzip file is damaged"
        ) from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(
            f"expected an IDX file at {path} (magic bytes 00 00, a type code, a rank) but it "
            f"starts with {data[:4].hex(' ') or 'nothing'}"
        )
    dtype, rank = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * rank
    if len(data) < header:
        raise ValueError(
            f"expected {rank} dimension sizes in the header of {path} but the file ends first"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(rank))
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"expected {expected} bytes of data after the header of {path} (shape {shape}) "
            f"but found {len(data) - header}; the file is truncated or damaged"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )
