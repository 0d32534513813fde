import numpy as np
import pytest
import torch

from pyro_hfvae.metrics import (
    dci,
    discrete_mutual_information,
    disentanglement_completeness,
    evaluate,
    explicitness,
    factor_vae_score,
    mig,
    mig_sup,
    modularity,
    modularity_from_mutual_information,
    sample_codes,
    sap,
)

RS = np.random.RandomState(0)
FACTORS = RS.randint(3, size=(100, 2))
CODES = RS.randn(100, 3)


@pytest.mark.parametrize("metric", [mig, mig_sup, modularity, discrete_mutual_information])
@pytest.mark.parametrize(
    "codes, factors, error, match",
    [
        (
            CODES[:, 0],
            FACTORS,
            ValueError,
            r"expected codes of shape \(num_samples, num_codes\) but got shape \(100,\); "
            r"reshape with codes.reshape\(-1, 1\)",
        ),
        (
            CODES,
            FACTORS[:, 0],
            ValueError,
            r"expected factors of shape \(num_samples, num_factors\) but got shape "
            r"\(100,\); reshape",
        ),
        (CODES[:90], FACTORS, ValueError, r"one row per code sample \(90 rows\) but got 100 rows"),
        (
            CODES,
            np.hstack([FACTORS, np.ones((100, 1), int)]),
            ValueError,
            r"factor 2 of factors takes the single value \[1\].*np.delete\(factors, 2, axis=1\)",
        ),
        (
            np.where(np.arange(100)[:, None] == 7, np.nan, CODES),
            FACTORS,
            ValueError,
            r"expected finite codes but got NaN or inf in 1 of 100 rows \(first rows \[7\]\)",
        ),
        (
            CODES[:10],
            FACTORS[:10],
            ValueError,
            r"expected at least num_bins=20 samples .* but got 10 samples; "
            r"pass more samples or a smaller num_bins",
        ),
        (
            CODES,
            FACTORS + 0.5,
            ValueError,
            r"expected integer factor classes in factors but got non-integer values such "
            r"as \[0.5, 1.5",
        ),
        (CODES.astype(str), FACTORS, TypeError, r"expected codes to be a numeric array"),
        (
            CODES,
            FACTORS.astype(str),
            TypeError,
            r"expected integer factor classes in factors but got dtype <U",
        ),
    ],
    ids=[
        "codes_1d",
        "factors_1d",
        "rows",
        "single_value_factor",
        "nan",
        "too_few_samples",
        "non_integer",
        "string_codes",
        "string_factors",
    ],
)
def test_array_metric_errors(metric, codes, factors, error, match):
    with pytest.raises(error, match=match):
        metric(codes, factors)


def test_whole_number_float_factors_are_accepted():
    assert mig(CODES, FACTORS.astype(np.float64)) == mig(CODES, FACTORS)


def test_too_few_columns():
    with pytest.raises(ValueError, match=r"at least 2 columns in codes \(MIG compares"):
        mig(CODES[:, :1], FACTORS)
    with pytest.raises(ValueError, match=r"at least 2 columns in factors \(MIG-sup compares"):
        mig_sup(CODES, FACTORS[:, :1])
    with pytest.raises(ValueError, match=r"at least 2 columns in factors \(modularity"):
        modularity(CODES, FACTORS[:, :1])
    with pytest.raises(ValueError, match=r"at least 2 codes and 2 factors"):
        disentanglement_completeness(np.ones((3, 1)))
    with pytest.raises(ValueError, match="non-negative"):
        modularity_from_mutual_information(-np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"expected num_bins to be an integer >= 2 but got 1"):
        mig(CODES, FACTORS, num_bins=1)


@pytest.mark.parametrize("metric", [explicitness, sap, dci])
def test_train_test_errors(metric):
    with pytest.raises(
        ValueError,
        match=r"expected codes_test with the same number of codes as codes_train \(3\) "
        r"but got 2",
    ):
        metric(CODES, FACTORS, CODES[:, :2], FACTORS)
    with pytest.raises(ValueError, match=r"expected factors_test with the same number of factors"):
        metric(CODES, FACTORS, CODES, FACTORS[:, :1])
    with pytest.raises(ValueError, match=r"factors_train takes the single value"):
        metric(
            CODES,
            np.hstack([FACTORS, np.zeros((100, 1), int)]),
            CODES,
            np.hstack([FACTORS, np.zeros((100, 1), int)]),
        )
    with pytest.raises(
        TypeError, match=r"expected random_state to be an int, a numpy.random.RandomState"
    ):
        metric(CODES, FACTORS, CODES, FACTORS, random_state="zero")


class NoFactors:
    pass


def test_sampling_errors(one_hot_factors, perfect_encoder):
    with pytest.raises(
        TypeError, match=r"lacks num_factors, sample_factors, sample_observations_from_factors"
    ):
        factor_vae_score(NoFactors(), perfect_encoder)
    with pytest.raises(
        ValueError, match=r"expected encode to return one row per observation \(16\)"
    ):
        sample_codes(one_hot_factors, lambda x: perfect_encoder(x)[:3], 16)
    with pytest.raises(ValueError, match=r"expected finite encode\(observations\) but got NaN"):
        sample_codes(one_hot_factors, lambda x: perfect_encoder(x) * torch.nan, 16)
    with pytest.raises(ValueError, match=r"expected batch_size to be an integer >= 2 but got 1"):
        factor_vae_score(one_hot_factors, perfect_encoder, batch_size=1)
    with pytest.raises(ValueError, match=r"unknown names \['mgi'\]"):
        evaluate(one_hot_factors, perfect_encoder, metrics=["mgi"])
    with pytest.raises(ValueError, match=r"options for \['sap'\]"):
        evaluate(one_hot_factors, perfect_encoder, metrics=["mig"], options={"sap": {}})
