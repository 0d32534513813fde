import math

import numpy as np
import pytest
import torch


class OneHotFactors:
    """
    Fabricated ground-truth data set: a full grid of discrete factors whose observation is the
    concatenation of one one-hot vector per factor (so a perfect encoder exists).
    """

    def __init__(self, factor_sizes=(3, 4, 5, 6), factor_names=None):
        self.factor_sizes = tuple(factor_sizes)
        self.factor_names = tuple(factor_names or (f"f{k}" for k in range(len(factor_sizes))))
        self.num_factors = len(self.factor_sizes)
        self.observation_shape = (sum(self.factor_sizes),)
        self.offsets = np.concatenate([[0], np.cumsum(self.factor_sizes)[:-1]])

    def sample_factors(self, n, random_state):
        return np.stack(
            [random_state.randint(size, size=n) for size in self.factor_sizes], axis=1
        ).astype(np.int64)

    def sample_observations_from_factors(self, factors, random_state):
        factors = np.asarray(factors)
        observations = torch.zeros(len(factors), sum(self.factor_sizes))
        rows = torch.arange(len(factors))[:, None]
        observations[rows, torch.from_numpy(factors + self.offsets)] = 1.0
        return observations

    def __len__(self):
        return math.prod(self.factor_sizes)

    def factors_of(self, indices):
        return np.stack(np.unravel_index(np.asarray(indices), self.factor_sizes), axis=-1).astype(
            np.int64
        )

    def observations(self, indices):
        return self.sample_observations_from_factors(self.factors_of(indices), None)


class PerfectEncoder:
    """Reads every factor back from its one-hot block, scaled to [0, 1]; counts calls."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.calls = 0

    def __call__(self, observations):
        self.calls += 1
        codes = []
        for offset, size in zip(self.dataset.offsets, self.dataset.factor_sizes):
            codes.append(observations[:, offset : offset + size].argmax(1).double() / (size - 1))
        return torch.stack(codes, dim=1)


class RandomEncoder:
    """Ignores its input: standard normal codes from its own seeded generator, as numpy."""

    def __init__(self, num_codes, seed=0):
        self.num_codes = num_codes
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, observations):
        return torch.randn(len(observations), self.num_codes, generator=self.generator).numpy()


@pytest.fixture
def one_hot_factors():
    return OneHotFactors()


@pytest.fixture
def perfect_encoder(one_hot_factors):
    return PerfectEncoder(one_hot_factors)


@pytest.fixture
def random_encoder(one_hot_factors):
    return RandomEncoder(num_codes=one_hot_factors.num_factors)


@pytest.fixture
def make_dataset():
    return OneHotFactors


@pytest.fixture
def make_perfect_encoder():
    return PerfectEncoder


@pytest.fixture
def make_random_encoder():
    return RandomEncoder
