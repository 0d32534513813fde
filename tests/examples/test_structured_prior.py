import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, norm

from pyro_hfvae import HFVAELoss


@pytest.fixture
def example(load_example):
    return load_example("structured_prior")


@pytest.mark.parametrize("rho", [0.0, 0.5, -0.8])
def test_prior_total_correlation_matches_scipy(example, rho):
    vae = example.StructuredVAE(20, correlated=True, rho=rho)
    points = torch.tensor([[0.3, -1.2], [2.0, 1.5], [0.0, 0.0]])
    cov = [[1.0, rho], [rho, 1.0]]
    expected = np.mean([multivariate_normal([0, 0], cov).logpdf(p) - norm.logpdf(p).sum() for p in points.numpy()])
    assert example.prior_total_correlation(vae, points) == pytest.approx(expected, abs=1e-5)
    independent = example.StructuredVAE(20, correlated=False, rho=rho)
    assert example.prior_total_correlation(independent, points) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("correlated", [False, True])
def test_nested_groups_give_one_term_per_node(example, correlated):
    x, _, _ = example.make_data(64, 0.8, seed=0)
    vae = example.StructuredVAE(x.shape[1], correlated, 0.8)
    loss = HFVAELoss(1.0, 4.0, 2.0, level_weights=[2.0], concrete_scoring="argmax")
    idx = torch.arange(32)
    value = loss.loss(vae.model, vae.guide, x[idx], idx, 64)
    terms = {key: float(v) for key, v in loss.terms.items()}
    assert math.isfinite(value)
    # root -> {class, style}; style -> {shape, pose}; shape, pose -> 2 variables each
    assert terms["tc_within"] == pytest.approx(terms["tc_within/style"])
    assert terms["tc_within_2"] == pytest.approx(terms["tc_within/style/shape"] + terms["tc_within/style/pose"],
                                                 abs=1e-5)
    assert terms["dimwise_kl"] == pytest.approx(terms["dimwise_kl/class"] + terms["dimwise_kl/style"], abs=1e-4)
    decomposed = terms["mutual_info"] + terms["tc_between"] + terms["tc_within"] + terms["tc_within_2"] \
        + terms["dimwise_kl"]
    assert decomposed == pytest.approx(terms["kl"], abs=1e-3)


def test_make_data_has_the_requested_correlation(example):
    _, classes, shape = example.make_data(20000, 0.6, seed=1)
    assert np.corrcoef(shape.T)[0, 1] == pytest.approx(0.6, abs=0.02)
    assert set(classes) == {0, 1, 2}


def test_main_tiny(example):
    args = example.make_parser().parse_args(["--num-data", "200", "--steps", "4", "--batch-size", "50",
                                             "--threads", "1"])
    results = example.main(args)
    assert len(results) == 2
    independent, correlated = results.values()
    assert independent["p_tc_shape"] == pytest.approx(0.0, abs=1e-6)
    for result in results.values():
        assert -1.0 <= result["shape_correlation"] <= 1.0
        assert math.isfinite(result["q_tc_shape"]) and math.isfinite(result["terms"]["elbo"])
        assert 1 / 3 <= result["class_accuracy"] <= 1.0
