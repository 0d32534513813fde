import numpy as np
import pytest
import torch

from pyro_hfvae.metrics import (
    METRICS,
    beta_vae_score,
    evaluate,
    factor_vae_score,
    mig,
    sample_codes,
)
from pyro_hfvae.metrics.factor_vae import _votes, fixed_factor_batches

SMALL = {"num_train": 400, "num_eval": 200}


def test_factor_vae_perfect_encoder_scores_one(one_hot_factors, perfect_encoder):
    scores = factor_vae_score(one_hot_factors, perfect_encoder, num_variance_estimate=500, **SMALL)
    assert scores == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": 4.0}


def test_factor_vae_random_encoder_is_near_chance(one_hot_factors, random_encoder):
    scores = factor_vae_score(
        one_hot_factors, random_encoder, num_train=2000, num_eval=2000, num_variance_estimate=500
    )
    # Four factors: a classifier that learned nothing is right ~1/4 of the time.
    assert scores["eval_accuracy"] == pytest.approx(0.25, abs=0.06)


def test_factor_vae_prunes_collapsed_codes(one_hot_factors, perfect_encoder):
    def encode(x):
        codes = perfect_encoder(x)
        return torch.cat(
            [codes, 0.01 * codes[:, :1], torch.zeros(len(x), 1, dtype=codes.dtype)], dim=1
        )

    scores = factor_vae_score(one_hot_factors, encode, num_variance_estimate=500, **SMALL)
    assert scores == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": 4.0}
    nothing_active = factor_vae_score(
        one_hot_factors, lambda x: 0.001 * perfect_encoder(x), num_variance_estimate=500, **SMALL
    )
    assert nothing_active == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}


def test_factor_vae_votes_match_a_vote_by_vote_loop(one_hot_factors, perfect_encoder):
    mixing = np.random.RandomState(1).randn(4, 5)

    def encode(x):
        return perfect_encoder(x).numpy() @ mixing + 0.3 * np.sin(
            1000 * x.numpy()[:, :5].sum(1, keepdims=True) + 1
        )

    global_variance = torch.tensor([0.5, 1.0, 2.0, 0.7, 1.3], dtype=torch.float64)
    active = torch.tensor([True, True, False, True, True])
    num_votes, batch_size = 300, 16
    votes = _votes(
        one_hot_factors,
        encode,
        num_votes,
        batch_size,
        np.random.RandomState(0),
        global_variance,
        active,
        encode_batch_size=100,
    )
    fixed, factors = fixed_factor_batches(
        one_hot_factors, num_votes, batch_size, np.random.RandomState(0)
    )
    expected = np.zeros((4, 4), dtype=np.int64)
    for k, batch in zip(fixed, factors):
        assert (batch[:, k] == batch[0, k]).all()
        codes = encode(one_hot_factors.sample_observations_from_factors(batch, None))[
            :, active.numpy()
        ]
        ratio = np.var(codes, axis=0, ddof=1) / global_variance.numpy()[active.numpy()]
        expected[k, np.argmin(ratio)] += 1
    np.testing.assert_array_equal(votes, expected)
    assert len(np.unique(expected.argmax(0))) > 1


def test_beta_vae_perfect_and_random(one_hot_factors, perfect_encoder, random_encoder):
    assert beta_vae_score(one_hot_factors, perfect_encoder, **SMALL)["eval_accuracy"] == 1.0
    random = beta_vae_score(one_hot_factors, random_encoder, num_train=1000, num_eval=1000)
    assert random["eval_accuracy"] == pytest.approx(0.25, abs=0.06)


@pytest.mark.parametrize("metric", [factor_vae_score, beta_vae_score])
def test_deterministic_under_random_state(metric, one_hot_factors, make_perfect_encoder):
    mixing = torch.eye(4, dtype=torch.float64) + 0.7 * torch.randn(4, 4, dtype=torch.float64)

    def encode(x):
        codes = make_perfect_encoder(one_hot_factors)(x) @ mixing
        return codes + 0.5 * torch.sin(1000.0 * codes.sum(1, keepdim=True))

    first = metric(one_hot_factors, encode, random_state=3, **SMALL)
    assert first == metric(one_hot_factors, encode, random_state=np.random.RandomState(3), **SMALL)
    assert first != metric(one_hot_factors, encode, random_state=4, **SMALL)


def test_sample_codes_follows_disentanglement_lib_protocol(one_hot_factors, perfect_encoder):
    codes, factors = sample_codes(
        one_hot_factors, perfect_encoder, 50, random_state=0, batch_size=16
    )
    assert perfect_encoder.calls == 4
    rs = np.random.RandomState(0)
    expected = np.concatenate([one_hot_factors.sample_factors(n, rs) for n in (16, 16, 16, 2)])
    np.testing.assert_array_equal(factors, expected)
    np.testing.assert_allclose(
        codes.numpy(), factors / (np.array(one_hot_factors.factor_sizes) - 1.0)
    )


def test_evaluate_reuses_codes_and_flattens_scores(one_hot_factors, perfect_encoder):
    scores = evaluate(
        one_hot_factors,
        perfect_encoder,
        metrics=["explicitness", "mig", "modularity"],
        random_state=5,
        num_train=300,
        num_test=100,
        batch_size=50,
    )
    assert list(scores) == ["mig", "modularity", "explicitness_train", "explicitness_test"]
    assert perfect_encoder.calls == 8  # 6 train + 2 test batches, shared by all three metrics
    rs = np.random.RandomState(5)
    assert scores["mig"] == mig(
        *sample_codes(one_hot_factors, perfect_encoder, 300, rs, batch_size=50)
    )
    assert all(isinstance(value, float) for value in scores.values())


def test_evaluate_all_metrics_with_options(one_hot_factors, perfect_encoder):
    options = {
        "factor_vae": {"num_variance_estimate": 300, **SMALL},
        "beta_vae": SMALL,
        "mig": {"num_bins": 10},
    }
    scores = evaluate(
        one_hot_factors,
        perfect_encoder,
        num_train=120,
        num_test=60,
        batch_size=100,
        options=options,
    )
    assert {name.split("_")[0] for name in scores} >= {
        "mig",
        "modularity",
        "explicitness",
        "sap",
        "dci",
    }
    assert scores["factor_vae_eval_accuracy"] == 1.0 and scores["beta_vae_eval_accuracy"] == 1.0
    assert (
        scores["mig"] > 0.9
        and scores["explicitness_test"] > 0.9
        and scores["dci_disentanglement"] > 0.9
    )
    assert list(scores)[-9:-5] == [
        "dci_disentanglement",
        "dci_completeness",
        "dci_informativeness_train",
        "dci_informativeness_test",
    ]
    assert len(METRICS) == 8


def test_encoder_may_return_numpy_float32(one_hot_factors, perfect_encoder):
    scores = factor_vae_score(
        one_hot_factors,
        lambda x: perfect_encoder(x).float().numpy(),
        num_variance_estimate=500,
        **SMALL,
    )
    assert scores["eval_accuracy"] == 1.0
