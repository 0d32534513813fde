import json
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


def test_heldout_perplexity_is_the_exponentiated_elbo_per_word(example):
    # a hand computation: the same noise, one document and one sample at a time, the KL in closed form
    torch.manual_seed(0)
    lda = example.ProdLDA(5, (3,), hidden_dim=4).eval()
    counts = torch.tensor([[2.0, 0.0, 1.0, 0.0, 3.0], [0.0, 1.0, 0.0, 0.0, 0.0]])
    posterior = lda.posterior(counts)["topics_0"].base_dist
    mean, std = lda.priors[0]
    generator, num_samples = torch.Generator().manual_seed(7), 3
    noise = [torch.randn(2, 3, generator=generator) for _ in range(num_samples)]
    bound = 0.0
    for d in range(2):
        log_likelihood = 0.0
        for eps in noise:
            z = posterior.loc[d] + posterior.scale[d] * eps[d]
            probs = lda.word_norm(lda.topic_words[0](z.softmax(-1))[None])[0].softmax(-1)
            log_likelihood += sum(n * math.log(p) for n, p in zip(counts[d].tolist(), probs.tolist())) / num_samples
        kl = sum(math.log(std / s) + (s ** 2 + (m - mean) ** 2) / (2 * std ** 2) - 0.5
                 for m, s in zip(posterior.loc[d].tolist(), posterior.scale[d].tolist()))
        bound += log_likelihood - kl
    expected = math.exp(-bound / counts.sum().item())
    assert example.heldout_perplexity(lda, counts, num_samples, seed=7) == pytest.approx(expected, rel=1e-5)


def test_load_corpus_filters_both_splits_by_the_training_split(example, tmp_path):
    args = example.make_parser().parse_args(["--data", str(tmp_path / "absent.npz"), "--num-docs", "80",
                                             "--max-df", "0.5"])
    train, test, vocab, description = example.load_corpus(args)
    assert "fabricated" in description and len(train) == 80 and 0 < len(test) <= 20
    assert train.shape[1] == test.shape[1] == len(vocab)
    # the common words occur in nearly every document, so they are the ones dropped
    assert not any(word.startswith("common") for word in vocab)
    assert (train.sum(-1) > 0).all() and (test.sum(-1) > 0).all()


def _check(records, num_topics, models=("hfvae", "prodlda")):
    assert [r["model"] for r in records] == list(models)
    for record in records:
        assert len(record["topics"]) == num_topics
        assert record["num_active"] == sum(t["active"] for t in record["topics"])
        for r, a, b, across in record["pairs"]:
            assert -1.0 <= r <= 1.0 and a < b
            assert across == (record["topics"][a]["group"] != record["topics"][b]["group"])
        assert all(math.isfinite(t["info"]) for t in record["topics"])
        assert record["heldout_perplexity"] == record["curve"][-1]["heldout_perplexity"] > 1.0
        assert [row["epoch"] for row in record["curve"]] == list(range(1, len(record["curve"]) + 1))


def test_main_on_a_fabricated_corpus_writes_resumable_results(example, tmp_path, caplog, capsys):
    argv = ["--preset", "smoke", "--data", str(tmp_path / "absent.npz"), "--results", str(tmp_path / "results"),
            "--figure"]
    records = example.main(example.parse_with_preset(example.make_parser(), example.PRESETS, argv))
    assert "fabricated" in caplog.text
    _check(records, 6)
    assert (tmp_path / "results" / "topics.png").stat().st_size > 0
    # a second call reads the saved runs instead of training again, and --summary prints their table
    again = example.main(example.parse_with_preset(example.make_parser(), example.PRESETS, argv))
    assert again == json.loads(json.dumps(records))
    with pytest.raises(ValueError, match=r"differs in \['epochs'\]"):
        example.main(example.parse_with_preset(example.make_parser(), example.PRESETS, argv + ["--epochs", "3"]))
    capsys.readouterr()
    example.main(example.parse_with_preset(example.make_parser(), example.PRESETS, argv + ["--summary"]))
    table = capsys.readouterr().out
    assert "| HFVAE, two groups of topics | 0 |" in table and "| ProdLDA, one group of topics (ELBO) | 0 |" in table
    assert "### HFVAE, two groups of topics, seed 0" in table
    assert "### ProdLDA, one group of topics (ELBO), seed 0" in table


def test_main_on_20_newsgroups(example, shared_data, tmp_path):
    argv = ["--preset", "smoke", "--data", str(shared_data / "20newsgroups" / "20news_bydate_bow.npz"),
            "--results", str(tmp_path), "--models", "hfvae", "--epochs", "1"]
    _check(example.main(example.parse_with_preset(example.make_parser(), example.PRESETS, argv)), 6, ("hfvae",))


def test_the_control_has_the_hfvae_groups_on_the_elbo(example, tmp_path):
    argv = ["--preset", "smoke", "--data", str(tmp_path / "absent.npz"), "--results", str(tmp_path / "results"),
            "--models", "two_groups_elbo", "prodlda", "--epochs", "1"]
    control, one_group = example.main(example.parse_with_preset(example.make_parser(), example.PRESETS, argv))
    assert [t["group"] for t in control["topics"]] == [0, 0, 0, 1, 1, 1]
    assert {t["group"] for t in one_group["topics"]} == {0}
    # the same seed, data and objective (the ELBO): only the split into groups differs
    assert control["curve"][0]["train_loss"] != one_group["curve"][0]["train_loss"]


@pytest.mark.parametrize("groups, active", [([0, 0, 1, 1, 1], [1, 1, 1, 0, 1]), ([0] * 4, [1] * 4),
                                            ([0, 1, 2, 2], [1, 1, 1, 1]), ([0, 1], [1, 0])])
def test_pairs_possible_counts_every_pair_of_active_topics(example, groups, active):
    topics = [{"group": g, "active": bool(a)} for g, a in zip(groups, active)]
    chosen = [t for t in topics if t["active"]]
    brute = {"across": 0, "within": 0}
    for i in range(len(chosen)):
        for j in range(i + 1, len(chosen)):
            brute["across" if chosen[i]["group"] != chosen[j]["group"] else "within"] += 1
    assert example.pairs_possible(topics) == brute
