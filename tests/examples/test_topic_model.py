import math

import numpy as np
import pytest
import torch


@pytest.fixture
def example(load_example):
    return load_example("topic_model")


@pytest.mark.parametrize("num_topics, alpha", [(2, 1.0), (25, 1.0), (10, 0.3)])
def test_laplace_dirichlet_prior(example, num_topics, alpha):
    # Srivastava and Sutton's formula with a vector of equal concentrations
    alphas = np.full(num_topics, alpha)
    mean = np.log(alphas) - np.log(alphas).mean()
    variance = (1 / alphas) * (1 - 2 / num_topics) + (1 / alphas).sum() / num_topics ** 2
    loc, scale = example.laplace_dirichlet_prior(num_topics, alpha)
    assert loc == pytest.approx(mean[0]) and scale ** 2 == pytest.approx(variance[0])


def test_npmi_identities(example):
    together = np.array([[1, 1, 0, 1], [1, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=bool)
    assert example.npmi(together, np.array([0, 1])) == pytest.approx(1.0)   # always together
    assert example.npmi(together, np.array([2, 3])) == pytest.approx(-1.0)  # never together
    assert example.npmi(together, np.array([0, 2])) == pytest.approx(0.0)   # independent: 1/4 = 1/2 * 1/2


def test_model_and_guide_have_one_site_per_group(example):
    lda = example.ProdLDA(30, (3, 4), hidden_dim=8)
    counts = torch.randint(0, 3, (5, 30)).float()
    posterior = lda.posterior(counts)
    assert [d.event_shape for d in posterior.values()] == [torch.Size([3]), torch.Size([4])]
    assert lda.topic_word_matrix().shape == (7, 30)


def _check(results, num_topics):
    assert len(results) == 2
    for result in results.values():
        assert len(result["topics"]) == num_topics
        assert result["num_active"] == sum(t["active"] for t in result["topics"])
        for pair in result["pairs"]:
            assert -1.0 <= pair[0] <= 1.0
        assert all(math.isfinite(t["info"]) for t in result["topics"])


def test_main_on_a_fabricated_corpus(example, tmp_path, caplog):
    args = example.make_parser().parse_args(["--data", str(tmp_path / "absent.npz"), "--num-docs", "200",
                                             "--num-topics", "6", "--epochs", "2", "--batch-size", "50",
                                             "--info-samples", "50", "--threads", "1"])
    results = example.main(args)
    assert "fabricated" in caplog.text
    _check(results, 6)


def test_main_on_20_newsgroups(example, shared_data):
    args = example.make_parser().parse_args(["--data", str(shared_data / "20newsgroups" / "20news_bydate_bow.npz"),
                                             "--num-docs", "300", "--num-topics", "6", "--epochs", "1",
                                             "--batch-size", "100", "--info-samples", "50", "--threads", "1"])
    _check(example.main(args), 6)
