"""Base class for data sets served as whole batches of observations by index."""

import abc
import operator
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

IndicesLike = torch.Tensor | np.ndarray | Sequence[int]


class ObservationDataset(Dataset, abc.ABC):
    """
    A :class:`torch.utils.data.Dataset` whose observations can also be read a whole batch at a
    time with :meth:`observations`, optionally from memory on an accelerator (``device="cuda"``).

    Per-item :meth:`__getitem__` serves :class:`torch.utils.data.DataLoader`; training loops that
    hold the data on one GPU should prefer :meth:`batches` (or :meth:`observations` with their own
    indices), which avoid the per-item Python overhead and the host-to-device copy.

    :param device: where the data are kept and observations are returned (default CPU).
    :type device: str or torch.device or None
    """

    #: Shape of one observation, e.g. ``(1, 64, 64)``.
    observation_shape: tuple[int, ...] = ()

    def __init__(self, *, device: str | torch.device | None = None) -> None:
        self.device = torch.device("cpu" if device is None else device)

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of items."""

    @abc.abstractmethod
    def _observations(self, indices: torch.Tensor) -> torch.Tensor:
        """Observations of validated int64 ``indices`` already on :attr:`device`."""

    def observations(self, indices: IndicesLike) -> torch.Tensor:
        """
        Observations of the items at ``indices``, a float32 tensor of shape
        ``(len(indices),) + observation_shape`` on :attr:`device`.

        Indices given on the host (lists, arrays, CPU tensors) are range-checked; CUDA index tensors
        are not, since the check would synchronise the device on every batch.

        :param indices: 1-D item indices in ``[0, len(self))``.
        :type indices: torch.Tensor or numpy.ndarray or list
        :returns: the batch of observations.
        :rtype: torch.Tensor
        """
        return self._observations(self._index_tensor(indices))

    def _index_tensor(self, indices: IndicesLike) -> torch.Tensor:
        # Index tensors already on an accelerator are not range-checked: that would sync the device.
        if isinstance(indices, torch.Tensor) and indices.device.type != "cpu":
            _check_index_dtype(indices.dtype, indices.dim(), tuple(indices.shape))
            return indices.to(device=self.device, dtype=torch.int64)
        return torch.from_numpy(self._index_array(indices)).to(self.device)

    def _index_array(self, indices: IndicesLike) -> np.ndarray:
        # A validated 1-D int64 host array.
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        array = np.asarray(indices)
        if array.size == 0:
            array = array.astype(np.int64)
        _check_index_dtype(array.dtype, array.ndim, array.shape)
        if array.size and (array.min() < 0 or array.max() >= len(self)):
            raise IndexError(
                f"expected indices in [0, {len(self)}) but got values in "
                f"[{array.min()}, {array.max()}]"
            )
        return array.astype(np.int64, copy=False)

    def _item_index(self, index: int) -> int:
        index = operator.index(index)
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(f"expected an index in [{-size}, {size}) but got {index}")
        return index

    def __getitem__(self, index: int):
        """
        One observation, a float32 tensor of shape :attr:`observation_shape`.

        :param int index: item index (negative counts from the end).
        """
        index = self._item_index(index)
        return self._observations(torch.tensor([index], device=self.device))[0]

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """
        One pass over the data in batches, without :class:`~torch.utils.data.DataLoader` overhead.

        Yields ``(x, idx)``: ``x`` from :meth:`observations` and ``idx`` the int64 item indices on
        :attr:`device`, ready for ``pyro.plate("data", size=len(dataset), subsample=idx)``.

        :param int batch_size: items per batch.
        :param generator: random generator for the order (a CPU :class:`torch.Generator`).
        :type generator: torch.Generator or None
        :param bool shuffle: visit the items in a random order (else in index order).
        :param bool drop_last: skip a final batch smaller than ``batch_size``.
        """
        if isinstance(batch_size, bool) or operator.index(batch_size) < 1:
            raise ValueError(f"expected a positive batch_size but got {batch_size}")
        size = len(self)
        if shuffle:
            order = torch.randperm(size, generator=generator)
        else:
            order = torch.arange(size)
        order = order.to(self.device)
        for start in range(0, size, batch_size):
            index = order[start : start + batch_size]
            if drop_last and len(index) < batch_size:
                break
            yield self.observations(index), index


def _check_index_dtype(dtype, ndim: int, shape: tuple[int, ...]) -> None:
    is_integer = (
        not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool
        if isinstance(dtype, torch.dtype)
        else np.dtype(dtype).kind in "iu"
    )
    if not is_integer:
        raise TypeError(f"expected integer indices but got dtype {dtype}")
    if ndim != 1:
        raise ValueError(
            f"expected a 1-D sequence of indices but got shape {shape}; "
            f"flatten it with indices.reshape(-1)"
        )
