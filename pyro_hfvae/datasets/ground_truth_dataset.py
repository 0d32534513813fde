"""The protocol shared by every data set whose items have known discrete factors of variation."""

import abc
import difflib
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch

from .observation_dataset import IndicesLike, ObservationDataset

logger = logging.getLogger(__name__)

RandomStateLike = int | np.random.RandomState | np.random.Generator
#: A held-out set of factor combinations: ``{factor_name: classes}`` (the combinations where every named
#: factor takes one of its listed classes are held out) or a predicate ``f(factors) -> bool array``
#: over an int64 array of shape ``(n, num_factors)``; ``None`` (or ``{}``): nothing is held out.
HoldOutLike = Mapping[str, Iterable[int]] | Callable[[np.ndarray], np.ndarray] | None

# Rows drawn per rejection round at most, when sampling only held-in or only held-out combinations.
_MAX_ROUND = 1 << 20


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

    To test generalisation to unseen combinations of factors, set :attr:`hold_out` to a set of factor
    combinations: :meth:`held_in_indices` and :meth:`held_out_indices` then split the items, and
    :meth:`sample_factors` draws only held-in combinations unless asked otherwise, so that a model
    trained on the held-in items is evaluated on the same combinations (or, with ``held_out=True``, on
    the unseen ones). For example, on a 2 x 3 grid, holding out class 1 of ``shape`` with classes 1
    and 2 of ``size``::

        >>> class Grid(GroundTruthDataset):
        ...     factor_names, factor_sizes = ("shape", "size"), (2, 3)
        ...     observation_shape = (1,)
        ...     def render(self, factors): return factors
        ...     def _observations(self, indices): return indices.float()[:, None]
        >>> grid = Grid()
        >>> grid.hold_out = {"shape": [1], "size": range(1, 3)}
        >>> grid.held_out_indices(), grid.held_in_indices()
        (array([4, 5]), array([0, 1, 2, 3]))
        >>> grid.factors_of(grid.held_out_indices()).tolist()
        [[1, 1], [1, 2]]
        >>> sorted({tuple(f) for f in grid.sample_factors(100, random_state=0).tolist()})
        [(0, 0), (0, 1), (0, 2), (1, 0)]
        >>> sorted({tuple(f) for f in grid.sample_factors(100, 0, held_out=True).tolist()})
        [(1, 1), (1, 2)]

    :param bool return_factors: make :meth:`__getitem__` return ``(observation, factors, index)``.
    :param device: where the data are kept and observations are returned (default CPU).
    :type device: str or torch.device or None
    """

    _hold_out: dict[str, np.ndarray] | Callable[[np.ndarray], np.ndarray] | None = None
    _held_out_flags: np.ndarray | None = None

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

    def sample_factors(
        self, n: int, random_state: RandomStateLike, held_out: bool | None = False
    ) -> np.ndarray:
        """
        Factor classes drawn uniformly and independently per factor; with a :attr:`hold_out`, drawn
        uniformly from the held-in combinations (``held_out=False``, the default) or from the
        held-out ones (``held_out=True``) by rejection.

        With a seed or a RandomState the draws are disentanglement_lib's (one ``randint`` per
        factor, in factor order) where nothing is held out (or ``held_out=None``).

        :param int n: number of factor tuples.
        :param random_state: seed or random source (see :func:`as_random_state`).
        :param held_out: draw only held-in combinations (``False``), only held-out ones (``True``)
            or from the whole grid (``None``).
        :type held_out: bool or None
        :returns: int64 array of shape ``(n, num_factors)``.
        :rtype: numpy.ndarray
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"expected a non-negative integer n but got {n!r}")
        if held_out not in (None, False, True):
            raise TypeError(f"expected held_out to be True, False or None but got {held_out!r}")
        random_state = as_random_state(random_state)
        if held_out is None or self._hold_out is None:
            if held_out:
                raise ValueError(
                    f"expected a hold-out to draw held-out combinations from but {type(self).__name__} "
                    f"holds nothing out; set dataset.hold_out first"
                )
            return self._sample_grid(int(n), random_state)
        wanted = self._held_out_flags.sum() if held_out else len(self) - self._held_out_flags.sum()
        if wanted == 0:
            raise ValueError(
                f"expected held-out items to draw from but the hold-out {self._hold_out_text()} "
                f"matches no item of {type(self).__name__}; hold out other combinations"
            )
        accept = wanted / len(self)
        chunks, remaining = [], int(n)
        while remaining:
            draws = self._sample_grid(min(math.ceil(1.2 * remaining / accept) + 8, _MAX_ROUND), random_state)
            draws = draws[self.held_out_mask(draws) == held_out][:remaining]
            chunks.append(draws)
            remaining -= len(draws)
        return np.concatenate(chunks) if chunks else np.empty((0, self.num_factors), dtype=np.int64)

    def _sample_grid(
        self, n: int, random_state: np.random.RandomState | np.random.Generator
    ) -> np.ndarray:
        factors = np.empty((n, self.num_factors), dtype=np.int64)
        for k, size in enumerate(self.factor_sizes):
            factors[:, k] = _random_integers(random_state, size, n)
        return factors

    @property
    def hold_out(self) -> dict[str, list[int]] | Callable[[np.ndarray], np.ndarray] | None:
        """
        The held-out factor combinations: ``{factor_name: classes}`` (the combinations in which every
        named factor takes one of its listed classes; e.g. ``{"shape": [0], "posX": range(22, 32)}``
        holds out every square in the right third of a dSprites image), a predicate
        ``f(factors) -> bool array`` over an int64 array of shape ``(n, num_factors)``, or ``None``
        (``{}`` too): nothing held out. Setting it checks the names and classes, and that some items
        are left in.

        :type: dict or callable or None
        """
        if isinstance(self._hold_out, dict):
            return {name: values.tolist() for name, values in self._hold_out.items()}
        return self._hold_out

    @hold_out.setter
    def hold_out(self, hold_out: HoldOutLike) -> None:
        spec = self._check_hold_out(hold_out)
        if spec is None:
            self._hold_out, self._held_out_flags = None, None
            return
        previous = self._hold_out, self._held_out_flags
        self._hold_out = spec
        try:
            flags = self.held_out_mask(self.factors_of(np.arange(len(self))))
        except Exception:
            self._hold_out, self._held_out_flags = previous
            raise
        if flags.all():
            self._hold_out, self._held_out_flags = previous
            raise ValueError(
                f"expected a hold-out that leaves items to train on but {self._hold_out_text(spec)} "
                f"holds out all {len(self)} items of {type(self).__name__}; hold out fewer classes"
            )
        self._held_out_flags = flags
        logger.info("%s: holding out %d of %d items (%s)", type(self).__name__, int(flags.sum()), len(self),
                    self._hold_out_text())

    def held_out_mask(self, factors: np.ndarray) -> np.ndarray:
        """
        Which rows of ``factors`` are held-out combinations (all ``False`` without a hold-out).

        :param numpy.ndarray factors: int array of shape ``(n, num_factors)``.
        :returns: bool array of shape ``(n,)``.
        :rtype: numpy.ndarray
        """
        factors = self._check_factors(factors)
        if self._hold_out is None:
            return np.zeros(len(factors), dtype=bool)
        if isinstance(self._hold_out, dict):
            mask = np.ones(len(factors), dtype=bool)
            for name, values in self._hold_out.items():
                mask &= np.isin(factors[:, self.factor_names.index(name)], values)
            return mask
        mask = np.asarray(self._hold_out(factors.copy()))
        if mask.shape != (len(factors),) or mask.dtype != bool:
            raise ValueError(
                f"expected the hold-out predicate to return a bool array of shape ({len(factors)},) but got "
                f"{mask.dtype} of shape {mask.shape}; return e.g. (factors[:, 0] == 0) & (factors[:, 3] >= 22)"
            )
        return mask

    def held_out_indices(self) -> np.ndarray:
        """
        Indices of the items showing held-out combinations (see :attr:`hold_out`), in increasing order.

        :returns: int64 array (empty without a hold-out).
        :rtype: numpy.ndarray
        """
        if self._held_out_flags is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self._held_out_flags).astype(np.int64)

    def held_in_indices(self) -> np.ndarray:
        """
        Indices of the items not held out (see :attr:`hold_out`), in increasing order: the training items.

        :returns: int64 array (every index without a hold-out).
        :rtype: numpy.ndarray
        """
        if self._held_out_flags is None:
            return np.arange(len(self), dtype=np.int64)
        return np.flatnonzero(~self._held_out_flags).astype(np.int64)

    def held_out_neighbour_indices(self) -> np.ndarray:
        """
        Indices of the held-in items that share part of a held-out combination: some named factor
        takes one of its listed classes (for ``{"shape": [0], "posX": range(22, 32)}``: the squares
        elsewhere and the other shapes in the right third). Their reconstructions are what the
        held-out items' are compared with: the model has seen each part of the combination, not
        the combination. Every held-in item for a predicate hold-out; none without a hold-out.

        :returns: int64 array, in increasing order.
        :rtype: numpy.ndarray
        """
        if self._held_out_flags is None:
            return np.zeros(0, dtype=np.int64)
        held_in = ~self._held_out_flags
        if isinstance(self._hold_out, dict):
            factors = self.factors_of(np.arange(len(self)))
            shares = np.zeros(len(self), dtype=bool)
            for name, values in self._hold_out.items():
                shares |= np.isin(factors[:, self.factor_names.index(name)], values)
            held_in &= shares
        return np.flatnonzero(held_in).astype(np.int64)

    def _check_hold_out(self, hold_out: HoldOutLike) -> dict[str, np.ndarray] | Callable | None:
        if hold_out is None:
            return None
        if callable(hold_out) and not isinstance(hold_out, Mapping):
            return hold_out
        if not isinstance(hold_out, Mapping):
            raise TypeError(
                f"expected hold_out to be a mapping {{factor_name: classes}}, a predicate or None but got "
                f"{type(hold_out).__name__}; e.g. {{{self.factor_names[0]!r}: [0]}}"
            )
        spec = {}
        for name, values in hold_out.items():
            if name not in self.factor_names:
                close = difflib.get_close_matches(str(name), self.factor_names, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"expected hold-out factor names from {', '.join(map(repr, self.factor_names))} "
                    f"but got {name!r}{hint}"
                )
            k = self.factor_names.index(name)
            if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
                raise TypeError(
                    f"expected a list of classes of factor {name!r} to hold out but got {values!r}; "
                    f"e.g. {name} = [0] or range(0, 2)"
                )
            values = list(values)
            if not values:
                raise ValueError(
                    f"expected at least one class of factor {name!r} to hold out but got none; "
                    f"drop {name!r} from the hold-out to hold out combinations with any {name}"
                )
            for value in values:
                if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                    raise TypeError(
                        f"expected integer classes of factor {name!r} to hold out but got {value!r}; "
                        f"map factor values to classes first"
                    )
                if not 0 <= value < self.factor_sizes[k]:
                    raise ValueError(
                        f"expected classes of factor {name!r} in [0, {self.factor_sizes[k]}) but got {value}"
                    )
            spec[name] = np.unique(np.asarray(values, dtype=np.int64))
        return spec or None

    def _hold_out_text(self, spec=None) -> str:
        spec = self._hold_out if spec is None else spec
        if isinstance(spec, dict):
            return "{" + ", ".join(f"{name!r}: {values.tolist()}" for name, values in spec.items()) + "}"
        return repr(spec)

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
