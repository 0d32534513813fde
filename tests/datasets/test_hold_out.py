import itertools

import numpy as np
import pytest
import torch

from pyro_hfvae.datasets import Digits, DSprites, GroundTruthDataset, Shapes3D

from .conftest import write_shapes3d


class Grid(GroundTruthDataset):
    """A fabricated 3 x 4 x 2 factor grid whose observations are their own indices."""

    factor_names = ("shape", "size", "colour")
    factor_sizes = (3, 4, 2)
    observation_shape = (1,)

    def render(self, factors):
        return self.index_of(factors)

    def _observations(self, indices):
        return indices.float()[:, None]


def brute_force_split(sizes, held_out):
    """Held-in and held-out indices by enumerating the grid row-major with a running index."""
    held_in_indices, held_out_indices = [], []
    for index, combination in enumerate(itertools.product(*map(range, sizes))):
        (held_out_indices if held_out(combination) else held_in_indices).append(index)
    return held_in_indices, held_out_indices


GRID_HOLD_OUTS = [
    ({"shape": [2]}, lambda c: c[0] == 2),
    ({"shape": [0], "size": range(2, 4)}, lambda c: c[0] == 0 and c[1] >= 2),
    ({"size": [3, 1, 1], "colour": [1]}, lambda c: c[1] in (1, 3) and c[2] == 1),
    ({"shape": [0, 1, 2], "size": [0], "colour": [0, 1]}, lambda c: c[1] == 0),
]


@pytest.mark.parametrize("hold_out, predicate", GRID_HOLD_OUTS)
@pytest.mark.parametrize("as_predicate", [False, True])
def test_grid_split_matches_enumeration(hold_out, predicate, as_predicate):
    dataset = Grid()
    if as_predicate:
        dataset.hold_out = lambda factors: np.array([predicate(tuple(row)) for row in factors], dtype=bool)
    else:
        dataset.hold_out = hold_out
    held_in, held_out = brute_force_split(Grid.factor_sizes, predicate)
    assert dataset.held_in_indices().tolist() == held_in
    assert dataset.held_out_indices().tolist() == held_out
    assert sorted(held_in + held_out) == list(range(len(dataset)))


def test_no_hold_out_holds_nothing_out():
    dataset = Grid()
    assert dataset.hold_out is None
    assert dataset.held_in_indices().tolist() == list(range(24))
    assert dataset.held_out_indices().tolist() == []
    dataset.hold_out = {"shape": [1]}
    dataset.hold_out = {}
    assert dataset.hold_out is None and len(dataset.held_in_indices()) == 24
    with pytest.raises(ValueError, match="holds nothing out; set dataset.hold_out"):
        dataset.sample_factors(3, 0, held_out=True)


def test_hold_out_reads_back_as_lists():
    dataset = Grid()
    dataset.hold_out = {"size": range(3, 1, -1), "shape": np.array([0])}
    assert dataset.hold_out == {"size": [2, 3], "shape": [0]}


# DSprites: shape 3, scale 6, orientation 40, posX 32, posY 32; the index is row-major with posY fastest.
DSPRITES_HOLD_OUTS = [
    ({"shape": [0], "posX": range(22, 32)}, lambda f: (f[:, 0] == 0) & (f[:, 3] >= 22)),
    ({"shape": [2], "scale": [4, 5]}, lambda f: (f[:, 0] == 2) & (f[:, 1] >= 4)),
    ({"orientation": [0, 39], "posY": [31]}, lambda f: np.isin(f[:, 2], [0, 39]) & (f[:, 4] == 31)),
]


@pytest.mark.parametrize("hold_out, predicate", DSPRITES_HOLD_OUTS)
def test_dsprites_split_by_index_arithmetic(hold_out, predicate):
    dataset = DSprites()
    dataset.hold_out = hold_out
    index = np.arange(737280)
    # Independent of factors_of: peel the classes off the flat index with div/mod, posY fastest.
    factors = np.empty((len(index), 5), dtype=np.int64)
    rest = index
    for k, size in reversed(list(enumerate((3, 6, 40, 32, 32)))):
        factors[:, k], rest = rest % size, rest // size
    expected = predicate(factors)
    np.testing.assert_array_equal(dataset.held_out_indices(), index[expected])
    np.testing.assert_array_equal(dataset.held_in_indices(), index[~expected])
    np.testing.assert_array_equal(dataset.index_of(factors[expected]), dataset.held_out_indices())
    assert dataset._packed is None  # nothing rendered


def test_dsprites_hold_out_does_not_render():
    dataset = DSprites()
    dataset.hold_out = {"shape": [0], "posX": range(22, 32)}
    # 1 of 3 shapes x 10 of 32 positions.
    assert len(dataset.held_out_indices()) == 737280 // 3 * 10 // 32
    assert dataset._packed is None


@pytest.mark.parametrize("held_out", [False, True])
@pytest.mark.parametrize("hold_out, predicate", GRID_HOLD_OUTS[:3])
def test_sampling_respects_hold_out(hold_out, predicate, held_out):
    dataset = Grid()
    dataset.hold_out = hold_out
    factors = dataset.sample_factors(2000, np.random.default_rng(0), held_out=held_out)
    assert factors.shape == (2000, 3) and factors.dtype == np.int64
    combinations = {tuple(row) for row in factors.tolist()}
    expected = {c for c in itertools.product(*map(range, Grid.factor_sizes)) if predicate(c) == held_out}
    # Only the wanted side, and (2000 draws over at most 24 combinations) every one of them.
    assert combinations == expected
    # Roughly uniform over the wanted combinations.
    counts = np.unique(dataset.index_of(factors), return_counts=True)[1]
    assert counts.min() > 0.5 * 2000 / len(expected)


def test_sampling_without_hold_out_is_unchanged():
    dataset = Grid()
    before = dataset.sample_factors(50, 3)
    dataset.hold_out = {"shape": [1]}
    np.testing.assert_array_equal(dataset.sample_factors(50, 3, held_out=None), before)
    dataset.hold_out = None
    np.testing.assert_array_equal(dataset.sample_factors(50, 3), before)


def test_dsprites_sampling_skips_a_small_held_out_block():
    dataset = DSprites()
    dataset.hold_out = {"shape": [2], "scale": [4, 5]}
    factors = dataset.sample_factors(5000, 0)
    assert not ((factors[:, 0] == 2) & (factors[:, 1] >= 4)).any()
    unseen = dataset.sample_factors(300, np.random.RandomState(1), held_out=True)
    assert ((unseen[:, 0] == 2) & (unseen[:, 1] >= 4)).all()


def test_labelled_and_shapes3d_hold_out(tmp_path):
    digits = Digits()
    digits.hold_out = {"digit": [3, 7]}
    np.testing.assert_array_equal(digits.held_out_indices(), np.flatnonzero(np.isin(digits.labels, [3, 7])))
    assert set(digits.sample_factors(500, 0)[:, 0].tolist()) == set(range(10)) - {3, 7}
    order = np.random.default_rng(3).permutation(96)
    write_shapes3d(tmp_path / "3dshapes.h5", order=order)
    shapes = Shapes3D(tmp_path / "3dshapes.h5")
    shapes.hold_out = {"scale": [2], "shape": [1]}
    factors = shapes.factors_of(np.arange(96))
    expected = np.flatnonzero((factors[:, 3] == 2) & (factors[:, 4] == 1))
    assert len(expected) == 96 // 6
    np.testing.assert_array_equal(shapes.held_out_indices(), expected)


@pytest.mark.parametrize(
    "hold_out, error, match",
    [
        ({"shpe": [0]}, ValueError, r"expected hold-out factor names from 'shape', 'size', 'colour' but got "
                                    r"'shpe'; did you mean 'shape'\?"),
        ({"size": [4]}, ValueError, r"expected classes of factor 'size' in \[0, 4\) but got 4"),
        ({"size": [-1]}, ValueError, r"in \[0, 4\) but got -1"),
        ({"size": []}, ValueError, "expected at least one class of factor 'size'"),
        ({"size": 1}, TypeError, "expected a list of classes of factor 'size'"),
        ({"size": "1"}, TypeError, "expected a list of classes of factor 'size'"),
        ({"size": [1.5]}, TypeError, "expected integer classes of factor 'size'"),
        ({"size": [True]}, TypeError, "expected integer classes"),
        ([("size", [1])], TypeError, "expected hold_out to be a mapping"),
        ({"shape": [0, 1, 2]}, ValueError, "holds out all 24 items of Grid; hold out fewer classes"),
        (lambda f: f[:, 0], ValueError, "expected the hold-out predicate to return a bool array"),
        (lambda f: np.ones(len(f), dtype=bool), ValueError, "holds out all 24 items"),
    ],
)
def test_bad_hold_out(hold_out, error, match):
    dataset = Grid()
    dataset.hold_out = {"shape": [1]}
    with pytest.raises(error, match=match):
        dataset.hold_out = hold_out
    # A rejected hold-out leaves the previous one in place.
    assert dataset.hold_out == {"shape": [1]}
    assert dataset.held_out_indices().tolist() == list(range(8, 16))


def test_held_out_argument_checked():
    with pytest.raises(TypeError, match="expected held_out to be True, False or None but got 'yes'"):
        Grid().sample_factors(2, 0, held_out="yes")


def test_observations_of_held_in_items():
    dataset = Grid()
    dataset.hold_out = {"colour": [1]}
    indices = torch.from_numpy(dataset.held_in_indices())
    assert dataset.observations(indices)[:, 0].tolist() == list(range(0, 24, 2))
