import itertools
import json
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from sklearn.metrics import mutual_info_score

from pyro_hfvae import HITLoss

TINY = ["--preset", "smoke"]


def parse(example, argv):
    """The script's settings for ``argv``, its ``--preset`` applied."""
    return example.parse_with_preset(example.make_parser(), example.PRESETS, argv)


@pytest.fixture
def example(load_example):
    return load_example("hfvae_mnist")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cluster_accuracy_is_the_best_permutation(example, seed):
    rng = np.random.RandomState(seed)
    labels, clusters = rng.randint(4, size=60), rng.randint(4, size=60)
    accuracy, matched = example.cluster_accuracy(labels, clusters, 4)
    best = max(np.mean(np.array(perm)[clusters] == labels) for perm in itertools.permutations(range(4)))
    assert accuracy == pytest.approx(best)
    # matched[label] is the cluster assigned to that label
    assert example.matched_accuracy(matched, clusters, labels) == pytest.approx(best)
    # Read through the matching, clusters that are a relabelling of the labels are all right.
    assert example.matched_accuracy(matched, matched[labels], labels) == 1.0


def test_soft_label_information_of_one_hot_probabilities_is_the_plugin_estimate(example):
    rng = np.random.RandomState(0)
    labels, clusters = rng.randint(10, size=500), rng.randint(10, size=500)
    clusters[:300] = labels[:300]
    probs = np.eye(10)[clusters]
    assert example.soft_label_information(labels, probs) == pytest.approx(mutual_info_score(labels, clusters))
    uniform = np.full((500, 10), 0.1)
    assert example.soft_label_information(labels, uniform) == pytest.approx(0.0, abs=1e-12)


def test_beta_vae_loss_multiplies_the_kl_terms_only():
    # The examples' beta-VAE: HITLoss with every rate times beta (sampled rates).
    x, z, beta = torch.tensor([0.5, -0.2]), torch.tensor([0.3, 0.1]), 3.0

    def model():
        with pyro.plate("data", 2):
            latent = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(latent, 1.0), obs=x)

    def guide():
        with pyro.plate("data", 2):
            pyro.sample("z", dist.Normal(z, 0.5))

    trace = pyro.poutine.trace(guide).get_trace()
    replayed = pyro.poutine.replay(guide, trace=trace), pyro.poutine.replay(model, trace=trace)
    loss = HITLoss(default_beta=beta, analytic_kl=False).loss(replayed[1], replayed[0])
    value = trace.nodes["z"]["value"]
    rate = dist.Normal(z, 0.5).log_prob(value) - dist.Normal(0.0, 1.0).log_prob(value)
    expected = -(dist.Normal(value, 1.0).log_prob(x) - beta * rate).sum()
    assert loss == pytest.approx(float(expected), rel=1e-6)


def _check_results(results):
    assert len(results) == 2
    hfvae, beta_vae = results.values()
    assert len(hfvae["info_z"]) == 10 and len(beta_vae["info_z"]) == 20
    for result in results.values():
        assert 0.0 <= result["cluster_accuracy"] <= 1.0
        assert 0.0 <= result["label_info"] <= math.log(10) + 1e-9
        assert 0.0 <= result["identity_kept"] <= 1.0
        assert all(math.isfinite(v) for v in result["decomposition"].values())
    assert 0.0 <= hfvae["label_info_soft"] <= math.log(10) + 1e-9
    assert 1 <= hfvae["clusters_used"] <= 10


def test_main_falls_back_to_scikit_learn_digits(example, tmp_path, caplog):
    args = parse(example, ["--data", str(tmp_path / "absent"), "--out-dir", str(tmp_path)] + TINY)
    results = example.main(args)
    assert "scikit-learn" in caplog.text
    _check_results(results)
    assert next(iter(results.values()))["figure_frames"].shape == (10, 3, 1, 8, 8)
    assert (tmp_path / "hfvae_mnist_traversals.png").stat().st_size > 0


def test_main_on_mnist(example, shared_data):
    args = parse(example, ["--data", str(shared_data / "mnist")] + TINY)
    results = example.main(args)
    _check_results(results)
    assert next(iter(results.values()))["figure_frames"].shape == (10, 3, 1, 28, 28)


def test_label_gap_is_the_normalised_difference(example):
    assert example.label_gap(1.5, [0.2, 0.9, 0.4]) == pytest.approx((1.5 - 0.9) / math.log(10))
    assert example.label_gap(0.1, [0.3], num_classes=2) == pytest.approx(-0.2 / math.log(2))


def test_main_held_out_and_json(example, tmp_path):
    path = tmp_path / "results.json"
    flags = TINY + ["--epochs", "1", "--data", str(tmp_path / "absent"), "--held-out-split", "test",
                    "--models", "hfvae", "--json", str(path)]
    results = example.main(parse(example, flags))
    (name, result), = results.items()
    assert result["steps"] == 200 // 50 and result["images_seen"] == 200
    saved = json.loads(path.read_text())["models"][name]
    assert "figure_frames" not in saved and saved["cluster_accuracy"] == result["cluster_accuracy"]
    assert 0.0 <= saved["held_out_cluster_accuracy"] <= 1.0
    assert saved["label_gap"] == pytest.approx(example.label_gap(result["label_info"], result["label_info_z"]))


def test_presets_yield_to_explicit_flags(example):
    args = parse(example, ["--preset", "paper", "--epochs", "7"])
    assert (args.split, args.held_out_split, args.epochs) == ("pooled_train", "pooled_held_out", 7)
    assert parse(example, []).epochs is None and parse(example, ["--preset", "paper"]).epochs == 100


def test_style_warm_up_trains_with_the_style_rate_weighted_then_with_the_hfvae_loss(example, monkeypatch, tmp_path):
    from pyro_hfvae.models import ConvHFVAE

    losses = []

    class RecordingSVI(example.SVI):
        def step(self, *args, **kwargs):
            losses.append(self.loss.__self__)  # SVI keeps the ELBO's bound loss method
            return super().step(*args, **kwargs)

    monkeypatch.setattr(example, "SVI", RecordingSVI)
    argv = ["--data", str(tmp_path / "absent"), "--steps", "6",
            "--style-warmup-epochs", "1", "--style-warmup-beta", "64"]
    args = parse(example, argv + TINY)
    images, _, _ = example.load_data(args)  # 200 digits, batches of 50: 4 steps per epoch
    vae = ConvHFVAE(tuple(images.shape[1:]), 10, args.style_dim, args.temperature, architecture="mlp",
                    hidden_dim=args.hidden_dim)
    example.train(vae, images, args, "hfvae")
    kinds = [type(loss).__name__ for loss in losses]
    assert kinds == ["HITLoss"] * 4 + ["HFVAELoss"] * 2
    assert losses[0].read_betas() == {"z": 64.0} and losses[0].default_beta == 1.0
    assert losses[0].concrete_scoring == args.concrete_scoring == "argmax"
    assert (losses[-1].alpha, losses[-1].beta, losses[-1].gamma) == (args.alpha, args.beta, args.gamma)


def test_contingency_table_counts_every_pair(example):
    rng = np.random.RandomState(3)
    labels, clusters = rng.randint(5, size=80), rng.randint(5, size=80)
    expected = [[sum(1 for a, b in zip(labels, clusters) if (a, b) == (i, j)) for j in range(5)] for i in range(5)]
    assert example.contingency_table(labels, clusters, 5).tolist() == expected


@pytest.mark.parametrize("guide, network", [("factorised", "ConvHFVAE"), ("structured", "SemiSupervisedHFVAE")])
def test_structured_guide_conditions_the_style_on_the_class(example, tmp_path, guide, network):
    flags = TINY + ["--data", str(tmp_path / "absent"), "--models", "hfvae", "--guide", guide]
    args = parse(example, flags)
    vae = example.hfvae_network((1, 8, 8), args)
    assert type(vae).__name__ == network
    x = torch.rand(4, 1, 8, 8).round()
    trace = pyro.poutine.trace(vae.guide).get_trace(x, torch.arange(4), 200)
    # The style's location moves with the class sample only under the structured guide.
    y_other = torch.eye(10)[[1, 2, 3, 4]]
    replayed = pyro.poutine.trace(pyro.poutine.condition(vae.guide, data={"y": y_other})).get_trace(
        x, torch.arange(4), 200)
    moved = not torch.allclose(trace.nodes["z"]["fn"].base_dist.loc, replayed.nodes["z"]["fn"].base_dist.loc)
    assert moved == (guide == "structured")
    (_, result), = example.main(args).items()
    assert result["clusters_used"] == sum(size > 0.01 for size in result["cluster_sizes"])
    assert sum(result["cluster_sizes"]) == pytest.approx(1.0) and sum(result["class_marginal"]) == pytest.approx(1.0)
    assert sum(map(sum, result["contingency"])) == 200


def test_conv_architecture_builds_both_models_convolutional(example, tmp_path):
    flags = TINY + ["--data", str(tmp_path / "absent"), "--architecture", "conv", "--channels", "4", "8"]
    args = parse(example, flags)
    hfvae = example.hfvae_network((1, 8, 8), args)
    baseline = example.image_network((1, 8, 8), 0, 20, args)
    for vae in (hfvae, baseline):
        convolutions = [m for m in vae.encoder_trunk.modules() if isinstance(m, torch.nn.Conv2d)]
        assert [m.out_channels for m in convolutions] == [4, 8]
    assert hfvae.encode(torch.rand(3, 1, 8, 8))["y"].shape == (3, 10)
    results = example.main(args)
    assert len(results) == 2
    _check_results(results)


def test_structured_guide_rejects_the_conv_architecture(example, tmp_path):
    args = parse(example, TINY + ["--guide", "structured", "--architecture", "conv"])
    with pytest.raises(ValueError, match="expected --architecture mlp"):
        example.hfvae_network((1, 8, 8), args)


def test_learned_class_prior_is_trained_and_recorded(example, tmp_path):
    args = parse(example, TINY + ["--data", str(tmp_path / "absent"), "--models", "hfvae", "--learn-class-prior",
                                  "--lr", "0.05"])
    (_, result), = example.main(args).items()
    assert len(result["class_prior"]) == 10 and sum(result["class_prior"]) == pytest.approx(1.0)
    assert max(result["class_prior"]) > 0.1 + 1e-4  # moved away from uniform in three steps
    assert example.image_network((1, 8, 8), 0, 20, args).class_prior_logits is None  # the baseline has no class


def test_structured_guide_rejects_a_learned_class_prior(example):
    args = parse(example, TINY + ["--guide", "structured", "--learn-class-prior"])
    with pytest.raises(ValueError, match="expected --guide factorised with --learn-class-prior"):
        example.hfvae_network((1, 8, 8), args)


@pytest.mark.parametrize("scheme", ["default", "xavier", "kaiming"])
def test_weight_init_redraws_every_layer_by_its_scheme(example, scheme):
    from pyro_hfvae.models import ConvHFVAE

    pyro.set_rng_seed(0)
    vae = ConvHFVAE((1, 28, 28), 10, 10, 0.66, architecture="mlp", hidden_dim=400)
    before = {name: value.clone() for name, value in vae.state_dict().items()}
    example.initialise_weights(vae, scheme)
    layers = [m for m in vae.modules() if isinstance(m, torch.nn.Linear)]
    assert layers
    for layer in layers:
        fan_out, fan_in = layer.weight.shape
        if scheme == "default":  # PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in)), left as it was
            assert layer.weight.abs().max() <= 1 / math.sqrt(fan_in)
            continue
        assert torch.all(layer.bias == 0)
        if scheme == "xavier":
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
        elif layer.weight.numel() > 10_000:  # He normal: sd sqrt(2 / fan_in)
            assert float(layer.weight.detach().std()) == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    changed = any(not torch.equal(before[name], value) for name, value in vae.state_dict().items())
    assert changed == (scheme != "default")


def test_kmeans_class_init_fits_the_class_to_clusters_without_the_labels(example, tmp_path):
    from pyro_hfvae.models import ConvHFVAE

    args = parse(example, TINY + ["--data", str(tmp_path / "absent"), "--class-init-epochs", "2",
                                  "--class-init-fit-epochs", "40", "--lr", "0.01"])
    images, labels, _ = example.load_data(args)  # 200 digits, batches of 50: 4 steps per epoch
    runs = []
    for given in (labels, np.random.RandomState(0).permutation(labels)):
        pyro.set_rng_seed(0)
        vae = ConvHFVAE(tuple(images.shape[1:]), 10, args.style_dim, args.temperature, architecture="mlp",
                        hidden_dim=args.hidden_dim)
        runs.append((example.kmeans_class_init(vae, images, given, args, held_out=(images[:50], given[:50])),
                     vae.state_dict()))
    (first, params), (shuffled, shuffled_params) = runs
    # The labels only score the clusters: training is the same with shuffled labels.
    assert all(torch.equal(params[name], shuffled_params[name]) for name in params)
    assert first["agreement"] == shuffled["agreement"] > 0.9
    assert first["kmeans_accuracy"] > shuffled["kmeans_accuracy"]
    assert first["images"] == (2 + 40) * 4 * 50
    # Digits the clusters were fitted on, scored as held out, keep their clusters: the same accuracy
    # on them as the training clusters read through the matching.
    rescored = example.kmeans_class_init(
        ConvHFVAE(tuple(images.shape[1:]), 10, args.style_dim, args.temperature, architecture="mlp",
                  hidden_dim=args.hidden_dim), images[:50], labels[:50], args, held_out=(images[:50], labels[:50]))
    assert rescored["kmeans_held_out_accuracy"] == pytest.approx(rescored["kmeans_accuracy"])


@pytest.mark.parametrize("guide", ["factorised", "structured"])
def test_main_counts_the_class_init_images_in_the_budget(example, tmp_path, guide):
    flags = TINY + ["--data", str(tmp_path / "absent"), "--models", "hfvae", "--class-init", "kmeans",
                    "--class-init-epochs", "1", "--class-init-fit-epochs", "1", "--guide", guide]
    (_, result), = example.main(parse(example, flags)).items()
    assert result["class_init"]["images"] == (4 + 4) * 50
    assert result["images_seen"] == 3 * 50 + result["class_init"]["images"]
    assert 0.0 <= result["class_init"]["kmeans_accuracy"] <= 1.0


def test_minibatches_cover_each_epoch_once_in_a_fresh_order(example):
    batches = list(itertools.islice(example.minibatches(7, 3, seed=0, device="cpu"), 6))  # 2 batches an epoch
    assert all(len(batch) == 3 for batch in batches)
    epochs = [torch.cat(batches[i:i + 2]) for i in range(0, 6, 2)]
    assert all(len(set(epoch.tolist())) == 6 for epoch in epochs)  # one item of 7 left out, none repeated
    generator = torch.Generator().manual_seed(0)
    assert all(torch.equal(epoch, torch.randperm(7, generator=generator)[:6]) for epoch in epochs)


@pytest.mark.parametrize("flags", [["--class-init-epochs", "-1"], ["--class-init-fit-epochs", "0"]])
def test_kmeans_class_init_rejects_a_start_without_epochs(example, tmp_path, flags):
    args = parse(example, TINY + ["--data", str(tmp_path / "absent"), "--models", "hfvae", "--class-init", "kmeans"]
                 + flags)
    with pytest.raises(ValueError, match="expected --class-init-epochs >= 0 and --class-init-fit-epochs >= 1"):
        example.main(args)
