import math

import pytest

TINY = ["--steps", "2", "--batch-size", "8", "--hidden-dim", "16", "--metrics", "tiny", "--eval-batches", "1",
        "--eval-batch-size", "16", "--threads", "1"]


@pytest.fixture
def example(load_example):
    return load_example("hfvae_dsprites")


def test_objectives_are_the_special_cases_of_one_loss(example):
    args = example.make_parser().parse_args(["--beta", "5", "--gamma", "2"])
    weights = {}
    for kind in example.MODELS:
        _, _, _, loss = example.build(kind, args)
        weights[kind] = getattr(loss, "alpha", None), getattr(loss, "beta", None), getattr(loss, "gamma", None)
    assert weights["vae"] == (1.0, 1.0, 1.0)
    assert weights["beta-tcvae"] == (1.0, 5.0, 5.0)
    assert weights["hfvae"] == (1.0, 5.0, 2.0)
    assert weights["beta-vae"] == (None, None, None)  # Trace_ELBO on scaled latent sites


def test_main_tiny(example):
    args = example.make_parser().parse_args(TINY + ["--models", "beta-vae", "hfvae"])
    rows = example.main(args)
    assert [row["model"] for row in rows] == ["beta-vae", "hfvae"]
    for row in rows:
        for key in ("mig", "mig_sup", "factor_vae_eval_accuracy", "dci_disentanglement", "dci_completeness",
                    "dci_informativeness_test"):
            assert 0.0 <= row[key] <= 1.0, key
        assert math.isfinite(row["elbo"]) and row["elbo"] < 0
    summary = example.summarise(rows)
    assert summary.count("\n") == 3 and "HFVAE (beta=4, gamma=3)" in summary
