import math

import numpy as np
import pyro.distributions as dist
import pytest
import scipy.special
import torch

from pyro_hfvae.metrics import mig_posterior, mig_sup_posterior
from pyro_hfvae.metrics.mig_posterior import _kept_factors


class KnownSampleNormal(dist.Normal):
    """A Normal whose 'sample' is loc + scale * eps for a given eps, so tests know the samples."""

    def __init__(self, loc, scale, eps):
        super().__init__(loc, scale)
        self.eps = eps

    def sample(self, sample_shape=torch.Size()):
        return self.loc + self.scale * self.eps


SCALE = 0.7


def mixing_posterior(x):
    """Three codes mixing the one-hot factors of OneHotFactors((3, 4)), with known samples."""
    classes = torch.stack([x[:, :3].argmax(1), x[:, 3:].argmax(1)], dim=1).double()
    loc = torch.stack(
        [classes[:, 0], classes[:, 1] + 0.5 * classes[:, 0], 0.3 * classes[:, 1]], dim=1
    )
    eps = torch.sin(7.0 * loc + 1.0)
    return {"z": KnownSampleNormal(loc, SCALE, eps).to_event(1)}


def brute_force_normalized_information(dataset):
    """(codes, factors) max(0, I(z_j; v_k) / log |v_k|) at every item's sample, by loops."""
    items = np.arange(len(dataset))
    loc = mixing_posterior(dataset.observations(items))["z"].base_dist.loc.numpy()
    samples = loc + SCALE * np.sin(7.0 * loc + 1.0)
    factors = dataset.factors_of(items)

    def entropy(members, j):
        log_q = []
        for s in members:
            terms = [
                -0.5 * ((samples[s, j] - loc[m, j]) / SCALE) ** 2
                - math.log(SCALE * math.sqrt(2 * math.pi))
                for m in members
            ]
            log_q.append(scipy.special.logsumexp(terms) - math.log(len(members)))
        return -np.mean(log_q)

    result = np.zeros((3, 2))
    for j in range(3):
        marginal = entropy(items, j)
        for k, size in enumerate(dataset.factor_sizes):
            conditional = np.mean(
                [entropy(items[factors[:, k] == value], j) for value in range(size)]
            )
            result[j, k] = max(0.0, (marginal - conditional) / math.log(size))
    return result


@pytest.fixture
def grid(make_dataset):
    return make_dataset((3, 4))


def test_matches_brute_force_double_loop(grid):
    information = brute_force_normalized_information(grid)
    top = np.sort(information, axis=0)[::-1]
    expected_mig = np.mean(top[0] - top[1])
    by_code = np.sort(information, axis=1)[:, ::-1]
    expected_mig_sup = np.mean(
        by_code[:, 0] - by_code[:, 1]
    )  # all three codes vary (variance > 0.01)
    assert mig_posterior(mixing_posterior, grid, batch_size=5, pairwise_memory_mb=0.01) == pytest.approx(
        expected_mig, abs=1e-10
    )
    assert mig_sup_posterior(mixing_posterior, grid, batch_size=5) == pytest.approx(
        expected_mig_sup, abs=1e-10
    )


def separated_posterior(columns):
    """Posterior means are chosen one-hot factor classes (times 100), scale 0.1: well separated."""

    def posterior(x):
        sizes = (3, 4, 5)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        classes = torch.stack(
            [x[:, o : o + s].argmax(1) for o, s in zip(offsets, sizes)], 1
        ).double()
        return dist.Normal(100.0 * classes[:, columns], 0.1).to_event(1)

    return posterior


@pytest.mark.parametrize(
    "columns, mig, mig_sup",
    [
        ([0, 1, 2], 1.0, 1.0),
        ([0, 1, 2, 0], 2.0 / 3.0, 1.0),  # factor 0 has two codes: its gap is 0
        ([0, 1], 2.0 / 3.0, 1.0),  # factor 2 has no code
    ],
)
def test_closed_forms_with_separated_posteriors(make_dataset, columns, mig, mig_sup):
    dataset = make_dataset((3, 4, 5))
    posterior = separated_posterior(columns)
    assert mig_posterior(posterior, dataset, batch_size=17) == pytest.approx(mig, abs=1e-6)
    assert mig_sup_posterior(posterior, dataset, batch_size=17) == pytest.approx(mig_sup, abs=1e-6)


def test_mig_sup_ignores_inactive_variables(make_dataset):
    dataset = make_dataset((3, 4, 5))
    base = separated_posterior([0, 1, 0])

    def with_collapsed(x):
        loc = base(x).base_dist.loc
        return {
            "z": dist.Normal(loc, 0.1).to_event(1),
            "collapsed": dist.Normal(torch.zeros(len(x), 2, dtype=loc.dtype), 1.0).to_event(1),
        }

    # Counted, the two collapsed variables (gap 0) would pull the mean from 1 to 3/5.
    assert mig_sup_posterior(base, dataset) == pytest.approx(1.0, abs=1e-6)
    assert mig_sup_posterior(with_collapsed, dataset) == pytest.approx(1.0, abs=1e-6)
    assert mig_sup_posterior(with_collapsed, dataset, active_variance=-1.0) == pytest.approx(
        0.6, abs=1e-6
    )


def test_observations_fall_back_to_rendering_factors(make_dataset):
    class WithoutObservations:
        def __init__(self, inner):
            self.inner = inner
            self.factor_names = inner.factor_names

        def __len__(self):
            return len(self.inner)

        def factors_of(self, indices):
            return self.inner.factors_of(indices)

        def sample_observations_from_factors(self, factors, random_state):
            return self.inner.sample_observations_from_factors(factors, random_state)

    dataset = make_dataset((3, 4, 5))
    posterior = separated_posterior([0, 1, 2, 0])
    assert mig_posterior(posterior, WithoutObservations(dataset)) == pytest.approx(
        mig_posterior(posterior, dataset), abs=1e-12
    )


def cycling_factors(sizes, names):
    rows = max(sizes)
    return list(names), np.stack([np.arange(rows) % size for size in sizes], axis=1)


def test_default_exclusions():
    names, factors = cycling_factors(
        (3, 6, 40, 32, 32), ("shape", "scale", "orientation", "posX", "posY")
    )
    assert _kept_factors(names, factors, None) == [1, 2, 3, 4]
    names, factors = cycling_factors(
        (1, 3, 6, 40, 32, 32), ("color", "shape", "scale", "orientation", "posX", "posY")
    )
    assert _kept_factors(names, factors, None) == [2, 3, 4, 5]
    names, factors = cycling_factors(
        (10, 10, 10, 8, 4, 15),
        ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
    )
    assert _kept_factors(names, factors, None) == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]  # 3DShapes keeps its shape factor
    assert _kept_factors(names, factors, ("shape",)) == [0, 1, 2, 3, 5]


def test_bad_exclusions_and_data_sets(make_dataset):
    names, factors = cycling_factors((1, 3), ("color", "shape"))
    with pytest.raises(ValueError, match=r"add them to exclude_factors"):
        _kept_factors(names, factors, ())
    with pytest.raises(ValueError, match=r"among the factor names"):
        _kept_factors(names, factors, ("colour",))
    with pytest.raises(TypeError, match=r"write \('shape',\)"):
        _kept_factors(names, factors, "shape")
    with pytest.raises(TypeError, match="needs the whole factor grid"):
        mig_posterior(separated_posterior([0, 1]), object())
    with pytest.raises(ValueError, match="at least 2 latent variables"):
        mig_posterior(separated_posterior([0]), make_dataset((3, 4, 5)))
