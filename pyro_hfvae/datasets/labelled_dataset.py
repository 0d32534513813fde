"""Base class for data sets whose only known factor is one label per item (e.g. a digit class)."""

import abc

import numpy as np
import torch

from .ground_truth_dataset import GroundTruthDataset, RandomStateLike, as_random_state
from .observation_dataset import IndicesLike


class LabelledDataset(GroundTruthDataset):
    """
    A :class:`GroundTruthDataset` whose only factor is a label per item, so several items show each
    factor tuple: :meth:`index_of` (and so :meth:`sample_observations_from_factors` and
    :meth:`render`) draws one of the items with the requested label uniformly at random.

    The labels are kept as the int64 array :attr:`labels`. Subclasses set :attr:`factor_names`,
    :attr:`factor_sizes`, :attr:`class_names` and
    :attr:`observation_shape`, and implement :meth:`_observations` and :meth:`_raw`.

    :param numpy.ndarray labels: int array of shape ``(num_items,)`` with values in
        ``[0, factor_sizes[0])``.
    :param bool return_factors: make items ``(observation, factors, index)``.
    :param device: where the data are kept and observations are returned (default CPU).
    :type device: str or torch.device or None
    """

    #: Name of each label class.
    class_names: tuple[str, ...] = ()

    def __init__(
        self,
        labels: np.ndarray,
        *,
        return_factors: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(return_factors=return_factors, device=device)
        labels = np.asarray(labels)
        num_classes = self.factor_sizes[0]
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError(
                f"expected integer labels of shape (num_items,) but got {labels.dtype} "
                f"of shape {labels.shape}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"expected labels in [0, {num_classes}) but got values in "
                f"[{labels.min()}, {labels.max()}]"
            )
        self.labels = labels.astype(np.int64)
        self._by_label = np.argsort(self.labels, kind="stable")
        self._label_counts = np.bincount(self.labels, minlength=num_classes)
        self._label_starts = np.cumsum(self._label_counts) - self._label_counts

    def __len__(self) -> int:
        return len(self.labels)

    def index_of(
        self, factors: np.ndarray, random_state: RandomStateLike | None = None
    ) -> np.ndarray:
        """
        Indices of items with the labels ``factors[:, 0]``, each drawn uniformly among the items
        with that label.

        :param numpy.ndarray factors: int array of shape ``(n, 1)``.
        :param random_state: seed or random source (required: several items share each label).
        :returns: int64 array of shape ``(n,)``.
        :rtype: numpy.ndarray
        """
        factors = self._check_factors(factors)
        if random_state is None:
            raise ValueError(
                f"expected a random_state (e.g. random_state=0): several items of "
                f"{type(self).__name__} share each label, and one is drawn at random"
            )
        random_state = as_random_state(random_state)
        label = factors[:, 0]
        empty = self._label_counts[label] == 0
        if empty.any():
            raise ValueError(
                f"expected labels present in the data but no item has the label "
                f"{int(label[empty][0])} ({self.class_names[label[empty][0]]!r})"
            )
        counts = self._label_counts[label]
        offset = np.minimum((random_state.random(len(label)) * counts).astype(np.int64), counts - 1)
        return self._by_label[self._label_starts[label] + offset]

    def factors_of(self, index: IndicesLike) -> np.ndarray:
        """
        Labels of the items at ``index``, as factor classes.

        :param index: 1-D item indices.
        :type index: numpy.ndarray or torch.Tensor or list
        :returns: int64 array of shape ``(n, 1)``.
        :rtype: numpy.ndarray
        """
        return self.labels[self._index_array(index)][:, None]

    def render(self, factors: np.ndarray, random_state: RandomStateLike | None = None):
        """
        Raw form (as stored, e.g. uint8 pixels) of randomly chosen items with the labels
        ``factors[:, 0]``.

        :param numpy.ndarray factors: int array of shape ``(n, 1)``.
        :param random_state: seed or random source for the choice of items.
        """
        return self._raw(self.index_of(factors, random_state))

    @abc.abstractmethod
    def _raw(self, index: np.ndarray):
        """Raw form of the items at validated host ``index``."""


class _LabelledImages(LabelledDataset):
    # Labelled grey-level images stored as integers 0 .. max_value, observed as float32 in [0, 1]
    # (or binarised at half the range).

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        max_value: int,
        binarize: bool,
        return_factors: bool,
        device: str | torch.device | None,
    ) -> None:
        super().__init__(labels, return_factors=return_factors, device=device)
        self.observation_shape = (1,) + tuple(images.shape[1:])
        self.binarize = binarize
        self._max_value = max_value
        self._images = (
            torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
            .unsqueeze(1)
            .to(self.device)
        )

    def _observations(self, indices: torch.Tensor) -> torch.Tensor:
        pixels = self._images[indices]
        if self.binarize:
            return (2 * pixels.to(torch.int16) > self._max_value).to(torch.float32)
        return pixels.to(torch.float32).div_(self._max_value)

    def _raw(self, index: np.ndarray) -> np.ndarray:
        return self._images[torch.from_numpy(index).to(self.device), 0].cpu().numpy()
