# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The metrics given CUDA tensors (codes, encoders, posteriors) equal their values from CPU tensors.
"""

import math

import numpy as np
import pytest
import torch
from pyro.distributions import Independent

from pyro_hfvae.metrics import (
    beta_vae_score,
    dci,
    explicitness,
    factor_vae_score,
    mig,
    mig_sup,
    modularity,
    mutual_information,
    sap,
    total_correlation,
)

from ..fixed_noise import FixedNoiseConcrete, FixedNoiseNormal, gumbel
from .conftest import OneHotFactors

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
# float64 codes; histogram bins and sums may round differently on the device, nothing more.
REL, ABS = 1e-9, 1e-12


def codes_and_factors(num=300, seed=0):
    rs = np.random.RandomState(seed)
    factors = np.stack([rs.randint(3, size=num), rs.randint(4, size=num)], axis=1)
    codes = np.stack(
        [factors[:, 0] + 0.3 * rs.randn(num), factors[:, 1] + 0.5 * rs.randn(num), rs.randn(num)], axis=1
    )
    return torch.from_numpy(codes), factors


ARRAY_METRICS = {
    "mig": lambda c, f: mig(c, f),
    "mig_sup": lambda c, f: mig_sup(c, f),
    "modularity": lambda c, f: modularity(c, f),
    "sap_continuous": lambda c, f: sap(c[:200], f[:200], c[200:], f[200:], continuous=True),
    "sap": lambda c, f: sap(c[:200], f[:200], c[200:], f[200:]),
    "dci": lambda c, f: dci(c[:200], f[:200], c[200:], f[200:]),
    "explicitness": lambda c, f: explicitness(c[:200], f[:200], c[200:], f[200:]),
}


def as_dict(value) -> dict:
    return value if isinstance(value, dict) else {"value": value}


@pytest.mark.parametrize("name", list(ARRAY_METRICS))
@pytest.mark.parametrize("device", DEVICES)
def test_array_metrics_of_device_codes_equal_cpu(device, name):
    codes, factors = codes_and_factors()
    expected = as_dict(ARRAY_METRICS[name](codes, factors))
    actual = as_dict(ARRAY_METRICS[name](codes.to(device), factors))
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=REL, abs=ABS), key
    assert any(abs(v) > 1e-3 for v in expected.values())  # informative codes: not a trivial 0


class DeviceEncoder:
    """A fixed float64 linear read-out of the one-hot blocks, computed on ``device``."""

    def __init__(self, dataset: OneHotFactors, device) -> None:
        g = torch.Generator().manual_seed(3)
        self.weight = torch.randn(sum(dataset.factor_sizes), 5, generator=g, dtype=torch.float64).to(device)
        self.device = device

    def __call__(self, observations: torch.Tensor) -> torch.Tensor:
        return observations.to(device=self.device, dtype=torch.float64) @ self.weight


SAMPLING_METRICS = {
    "factor_vae_score": lambda d, e: factor_vae_score(d, e, random_state=0, batch_size=16, num_train=200,
                                                      num_eval=100, num_variance_estimate=500),
    "beta_vae_score": lambda d, e: beta_vae_score(d, e, random_state=0, batch_size=16, num_train=200, num_eval=100),
}


@pytest.mark.parametrize("name", list(SAMPLING_METRICS))
@pytest.mark.parametrize("device", DEVICES)
def test_sampling_metrics_of_a_device_encoder_equal_cpu(device, name):
    dataset = OneHotFactors()
    expected = SAMPLING_METRICS[name](dataset, DeviceEncoder(dataset, "cpu"))
    actual = SAMPLING_METRICS[name](dataset, DeviceEncoder(dataset, device))
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=REL, abs=ABS), key


TEMPERATURE = 0.5


def posterior(x: torch.Tensor) -> dict:
    """Columns of x: a's loc (2) and noise (2), b's loc and noise, c's logits (3) and Gumbel noise (3)."""
    temperature = torch.tensor(TEMPERATURE, dtype=x.dtype, device=x.device)
    return {
        "a": Independent(FixedNoiseNormal(x[:, 0:2], 0.5 + 0.1 * x[:, 0:2].abs(), x[:, 2:4]), 1),
        "b": Independent(FixedNoiseNormal(x[:, 4:5], torch.full_like(x[:, 4:5], 0.3), x[:, 5:6]), 1),
        "c": FixedNoiseConcrete(temperature, x[:, 6:9], x[:, 9:12]),
    }


def posterior_data(num=40, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num, 12, generator=g, dtype=torch.float64)
    x[:, 9:12] = gumbel((num, 3), g)
    return x


def information(device, estimator):
    # Small batches and memory bound: several posterior calls and chunks of the pairwise table.
    return estimator(posterior, posterior_data().to(device), groups={"ab": ["a", "b"]}, num_samples=30,
                     batch_size=16, pairwise_memory_mb=0.01)


@pytest.mark.parametrize("device", DEVICES)
def test_mutual_information_of_a_device_posterior_equals_cpu(device):
    expected = information("cpu", mutual_information)
    actual = information(device, mutual_information)
    assert (actual.num_data, actual.num_samples) == (expected.num_data, expected.num_samples) == (40, 30)
    assert actual.total == pytest.approx(expected.total, rel=REL)
    for field in ("groups", "sites"):
        assert getattr(actual, field).keys() == getattr(expected, field).keys()
        for key, value in getattr(expected, field).items():
            assert getattr(actual, field)[key] == pytest.approx(value, rel=REL, abs=ABS), (field, key)
    for key, value in expected.variables.items():
        np.testing.assert_allclose(actual.variables[key], value, rtol=REL, atol=ABS)
    assert 0.1 < expected.total <= math.log(40) + 1e-9


@pytest.mark.parametrize("device", DEVICES)
def test_total_correlation_of_a_device_posterior_equals_cpu(device):
    expected = information("cpu", total_correlation)
    actual = information(device, total_correlation)
    expected_fields, actual_fields = vars(expected), vars(actual)
    assert actual_fields.keys() == expected_fields.keys()
    for key, value in expected_fields.items():
        if isinstance(value, dict):
            assert actual_fields[key].keys() == value.keys()
            for inner, number in value.items():
                assert actual_fields[key][inner] == pytest.approx(number, rel=REL, abs=ABS), (key, inner)
        else:
            assert actual_fields[key] == pytest.approx(value, rel=REL, abs=ABS), key
