"""The protocol shared by every data set whose items have known discrete factors of variation."""

import abc
import math
import numbers

import numpy as np
import torch

from .observation_dataset import IndicesLike, ObservationDataset

RandomStateLike = int | np.random.RandomState | np.random.Generator


def as_random_state(random_state: RandomStateLike) -> np.random.RandomState | np.random.Generator:
    """
    ``random_state`` as a numpy random source: an int seeds a :class:`numpy.random.RandomState`
    (disentanglement_lib's convention, so seeded samples match it), a RandomState or a
    :class:`numpy.random.Generator` is used as given.

    :param random_state: seed or random source.
    :type random_state: int or numpy.random.RandomState or numpy.random.Generator
    :rtype: numpy.random.RandomState or numpy.random.Generator
    """
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.RandomState(int(random_state))
    raise TypeError(
        f"expected random_state to be an int, a numpy.random.RandomState or a "
        f"numpy.random.Generator but got {type(random_state).__name__}; pass e.g. random_state=0"
    )


def _random_integers(
    random_state: np.random.RandomState | np.random.Generator, high: int, size: int
) -> np.ndarray:
    if isinstance(random_state, np.random.RandomState):
        return random_state.randint(high, size=size).astype(np.int64)
    return random_state.integers(high, size=size, dtype=np.int64)


class GroundTruthDataset(ObservationDataset):
    """
    Base class for data sets whose items have known discrete factors of variation (factor classes
    ``0 .. factor_sizes[k] - 1``), the input of the disentanglement metrics.

    The default implementation describes a full factor grid in its official flat order (row-major,
    the last factor fastest): item ``i`` shows the factor classes ``factors_of(i)`` and
    ``index_of(factors_of(i)) == i``. Subclasses whose items are not a grid (labelled data) override
    :meth:`index_of`, :meth:`factors_of` and :meth:`__len__`.

    With ``return_factors=True`` an item is ``(observation, factors, index)``, so that::

        for x, factors, idx in DataLoader(dataset, batch_size=256, shuffle=True):
            with pyro.plate("data", size=len(dataset), subsample=idx):
                ...

    :param bool return_factors: make :meth:`__getitem__` return ``(observation, factors, index)``.
    :param device: where the data are kept and observations are returned (default CPU).
    :type device: str or torch.device or None
    """

    #: Names of the factors of variation, in the data set's official order.
    factor_names: tuple[str, ...] = ()
    #: Number of classes of each factor.
    factor_sizes: tuple[int, ...] = ()

    def __init__(
        self, *, return_factors: bool = False, device: str | torch.device | None = None
    ) -> None:
        super().__init__(device=device)
        self.return_factors = return_factors

    @property
    def num_factors(self) -> int:
        """Number of factors of variation."""
        return len(self.factor_sizes)

    def __len__(self) -> int:
        return math.prod(self.factor_sizes)

    def sample_factors(self, n: int, random_state: RandomStateLike) -> np.ndarray:
        """
        Factor classes drawn uniformly and independently per factor.

        With a seed or a RandomState the draws are disentanglement_lib's (one ``randint`` per
        factor, in factor order).

        :param int n: number of factor tuples.
        :param random_state: seed or random source (see :func:`as_random_state`).
        :returns: int64 array of shape ``(n, num_factors)``.
        :rtype: numpy.ndarray
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"expected a non-negative integer n but got {n!r}")
        random_state = as_random_state(random_state)
        factors = np.empty((int(n), self.num_factors), dtype=np.int64)
        for k, size in enumerate(self.factor_sizes):
            factors[:, k] = _random_integers(random_state, size, int(n))
        return factors

    @abc.abstractmethod
    def render(self, factors: np.ndarray):
        """
        Observations showing ``factors`` in the data set's own raw form (e.g. uint8 pixels).

        :param numpy.ndarray factors: int array of shape ``(n, num_factors)``.
        """

    def sample_observations_from_factors(
        self, factors: np.ndarray, random_state: RandomStateLike
    ) -> torch.Tensor:
        """
        Observations showing ``factors``, as the metrics feed them to an encoder: a float32 tensor
        of shape ``(n,) + observation_shape`` on :attr:`device` (pixel intensities in [0, 1]; word
        counts for :class:`~pyro_hfvae.datasets.BagOfWords`).

        :param numpy.ndarray factors: int array of shape ``(n, num_factors)``.
        :param random_state: seed or random source, used where several items show the same factors.
        :rtype: torch.Tensor
        """
        index = self.index_of(factors, random_state)
        return self._observations(torch.from_numpy(index).to(self.device))

    def index_of(
        self, factors: np.ndarray, random_state: RandomStateLike | None = None
    ) -> np.ndarray:
        """
        Item indices showing ``factors``. On a full grid each factor tuple has exactly one item (its
        row-major flat index) and ``random_state`` is unused.

        :param numpy.ndarray factors: int array of shape ``(n, num_factors)``.
        :param random_state: random source where several items show the same factors.
        :returns: int64 array of shape ``(n,)``.
        :rtype: numpy.ndarray
        """
        factors = self._check_factors(factors)
        if len(factors) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.ravel_multi_index(tuple(factors.T), self.factor_sizes).astype(np.int64)

    def factors_of(self, index: IndicesLike) -> np.ndarray:
        """
        Factor classes of the items at ``index``.

        :param index: 1-D item indices.
        :type index: numpy.ndarray or torch.Tensor or list
        :returns: int64 array of shape ``(n, num_factors)``.
        :rtype: numpy.ndarray
        """
        index = self._index_array(index)
        return np.stack(np.unravel_index(index, self.factor_sizes), axis=-1).astype(np.int64)

    def __getitem__(self, index: int):
        """
        One observation (float32, :attr:`observation_shape`), or ``(observation, factors, index)``
        with ``return_factors=True`` (``factors`` an int64 tensor of shape ``(num_factors,)``).

        :param int index: item index (negative counts from the end).
        """
        index = self._item_index(index)
        observation = self._observations(torch.tensor([index], device=self.device))[0]
        if not self.return_factors:
            return observation
        factors = torch.from_numpy(self.factors_of(np.array([index]))[0])
        return observation, factors, index

    def _check_factors(self, factors: np.ndarray) -> np.ndarray:
        if isinstance(factors, torch.Tensor):
            factors = factors.detach().cpu().numpy()
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise ValueError(
                f"expected factors of shape (n, {self.num_factors}) for the factors "
                f"{self.factor_names} but got shape {factors.shape}; "
                f"for one tuple use factors.reshape(1, -1)"
            )
        if factors.size == 0:
            return factors.astype(np.int64)
        if factors.dtype.kind not in "iu":
            raise TypeError(
                f"expected integer factor classes but got dtype {factors.dtype}; "
                f"map factor values to classes first"
            )
        factors = factors.astype(np.int64, copy=False)
        sizes = np.asarray(self.factor_sizes)
        bad = (factors < 0) | (factors >= sizes)
        if bad.any():
            k = int(np.nonzero(bad.any(axis=0))[0][0])
            raise ValueError(
                f"expected classes of factor {self.factor_names[k]!r} in [0, {sizes[k]}) "
                f"but got values in [{factors[:, k].min()}, {factors[:, k].max()}]"
            )
        return factors
