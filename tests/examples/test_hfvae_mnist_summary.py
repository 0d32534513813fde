"""examples/hfvae_mnist_summary.py: tables and figures from result files of examples/hfvae_mnist.py."""
import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def example(load_example):
    return load_example("hfvae_mnist_summary")


def _result(seed, beta, gamma, accuracy, info, tc_between, tc_within, gap):
    hfvae = {"kind": "hfvae", "cluster_accuracy": accuracy, "held_out_cluster_accuracy": accuracy - 0.01,
             "label_info": 1.0, "identity_kept": 0.5, "label_gap": gap, "images_seen": 1280,
             "info_z": [0.05, 1.0, 2.0], "label_info_z": [0.1, 0.2, 0.3],
             "decomposition": {"mutual_info": info, "tc_between": tc_between, "tc_within": tc_within, "elbo": -100.0}}
    return {"settings": {"seed": seed, "beta": beta, "gamma": gamma}, "models": {f"HFVAE (beta={beta:g})": hfvae}}


def test_tables_and_figures(example, tmp_path):
    paths = []
    for seed, (beta, accuracy, info, gap) in enumerate([(2, 0.4, 6.0, 0.1), (2, 0.6, 7.0, 0.3), (3, 0.5, 5.0, 0.2)]):
        path = tmp_path / f"run{seed}.json"
        path.write_text(json.dumps(_result(seed, beta, beta if beta == 2 else 3, accuracy, info, 1.0, 0.5, gap)))
        paths.append(str(path))
    args = example.make_parser().parse_args(["--runs", *paths[:2], "--sweep", *paths, "--out-dir", str(tmp_path)])
    text = example.main(args)
    runs, best, sweep = text.split("\n\n")
    assert best.splitlines()[2] == "| HFVAE (beta=2) | 0, 1 | 0 | -100.000 | 0.400 | 0.390 |"  # ties: the first seed
    row = runs.splitlines()[2]
    assert f"0.400, 0.600 (mean {np.mean([0.4, 0.6]):.3f} +- {np.std([0.4, 0.6], ddof=1):.3f}, median 0.500)" in row
    assert row.endswith("| 1, 1 of 3 |")  # one dimension below 0.1 nats in each run
    beta2 = sweep.splitlines()[2]
    assert beta2.startswith("| 2 | 2 | 2 | 6.500 +- 0.707 | 1.500 +- 0.000 | 0.200 +- 0.141 |")
    for name in ("tradeoff.png", "label_information.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_screen_table_names_the_changed_settings(example, tmp_path):
    record = _result(0, 16.0, 3.0, 0.4, 6.0, 0.0, 0.0, 0.1)
    record["settings"].update(concrete_scoring="relaxed", style_dim=10, temperature=0.66, lr=1e-3)
    path = tmp_path / "relaxed.json"
    path.write_text(json.dumps(record))
    row = example.main(example.make_parser().parse_args(["--screen", str(path)])).splitlines()[2]
    assert row.startswith("| HFVAE relaxed | concrete_scoring=relaxed | 0.400 | 0.390 | 1.000 | - | 1 of 3 |")


def test_screen_pools_the_seeds_of_a_setting(example, tmp_path):
    paths = []
    for seed, temperature, accuracy in [(1, 0.66, 0.5), (2, 0.66, 0.6), (1, 1.0, 0.4)]:
        record = _result(seed, 16.0, 3.0, accuracy, 6.0, 0.0, 0.0, 0.1)
        record["settings"].update(temperature=temperature)
        name = "base" if temperature == 0.66 else "t1"
        path = tmp_path / f"{name}_s{seed}.json"
        path.write_text(json.dumps(record))
        paths.append(str(path))
    rows = example.main(example.make_parser().parse_args(["--screen", *paths])).splitlines()[2:]
    assert len(rows) == 2
    pooled = f"{np.mean([0.5, 0.6]):.3f} +- {np.std([0.5, 0.6], ddof=1):.3f}"
    assert rows[0].startswith(f"| HFVAE base | - | {pooled} |")
    assert rows[0].endswith("| 1, 1 of 3 | -100.0 +- 0.0 | 1, 2 |")
    assert rows[1].startswith("| HFVAE t1 | temperature=1.0 | 0.400 | 0.390 |") and rows[1].endswith("| 1 |")


@pytest.mark.parametrize("stem, settings, runs_name, screen_start", [
    ("warmup", {"style_warmup_epochs": 5, "style_warmup_beta": 64.0},
     "HFVAE (beta=16) + style warm-up (5 epochs, style rate x 64)",
     "HFVAE warmup | style_warmup_epochs=5, style_warmup_beta=64.0"),
    ("conv", {"architecture": "conv", "channels": [16, 32], "hidden_dim": 256},
     "HFVAE (beta=16), conv 16-32", "HFVAE conv | architecture=conv, hidden_dim=256"),
    ("prior", {"learn_class_prior": True},
     "HFVAE (beta=16), learned class prior", "HFVAE prior | learn_class_prior=True"),
    ("kmeans", {"class_init": "kmeans", "class_init_epochs": 20, "class_init_fit_epochs": 2, "epochs": 78},
     "HFVAE (beta=16) + k-means start (20 beta-VAE epochs, then 78 epochs)",
     "HFVAE kmeans | class_init=kmeans, class_init_epochs=20, class_init_fit_epochs=2"),
    ("xavier", {"weight_init": "xavier"}, "HFVAE (beta=16), xavier weights", "HFVAE xavier | weight_init=xavier"),
])
def test_a_changed_network_or_schedule_names_its_rows(example, tmp_path, stem, settings, runs_name, screen_start):
    record = _result(0, 16.0, 3.0, 0.6, 6.0, 0.0, 0.0, 0.1)
    record["settings"].update(settings)
    path = tmp_path / f"{stem}.json"
    path.write_text(json.dumps(record))
    text = example.main(example.make_parser().parse_args(["--screen", str(path), "--runs", str(path)]))
    runs_row, screen_row = text.split("\n\n")[0].splitlines()[2], text.split("\n\n")[2].splitlines()[2]
    assert runs_row.startswith(f"| {runs_name} | 0 |")
    assert screen_row.startswith(f"| {screen_start} | 0.600 |")


def test_restarts_kept_by_the_class_kl(example, tmp_path):
    rng = np.random.default_rng(0)
    class_kl, accuracy = rng.permutation(6) / 10, rng.uniform(0.3, 0.8, 6)
    paths = []
    for seed in range(6):
        record = _result(seed, 16.0, 3.0, float(accuracy[seed]), 6.0, 0.0, 0.0, 0.1)
        record["models"]["HFVAE (beta=16)"]["decomposition"]["dimwise_kl/class"] = float(class_kl[seed])
        record["models"]["beta-VAE (beta=4)"] = {**record["models"]["HFVAE (beta=16)"], "kind": "beta-vae",
                                                 "decomposition": {"elbo": -90.0}}
        paths.append(tmp_path / f"seed{seed}.json")
        paths[-1].write_text(json.dumps(record))
    args = ["--runs", *map(str, paths), "--keep-by", "class_kl", "--restarts", "2"]
    _, rows, notes = example.main(example.make_parser().parse_args(args)).split("\n\n")
    kept = [2 * g + int(class_kl[2 * g + 1] > class_kl[2 * g]) for g in range(3)]  # a loop over the pairs
    for line, seed in zip(rows.splitlines()[2:], kept, strict=True):
        assert line.startswith(f"| HFVAE (beta=16) | {2 * (seed // 2)}, {2 * (seed // 2) + 1} | {seed} "
                               f"| {class_kl[seed]:.3f} | {accuracy[seed]:.3f} | {accuracy[seed] - 0.01:.3f} |")
    ranks = [np.argsort(np.argsort(v)) for v in (class_kl, accuracy)]
    rho = np.corrcoef(*ranks)[0, 1]
    held_out = accuracy[kept] - 0.01
    assert notes.splitlines() == [
        f"HFVAE (beta=16): kept runs' held-out cluster accuracy {np.mean(held_out):.3f} +- "
        f"{np.std(held_out, ddof=1):.3f}, median {np.median(held_out):.3f}; Spearman correlation of the class KL "
        f"with the training accuracy over 6 runs: {rho:.2f}",
        "beta-VAE (beta=4): no class KL in its result files"]


def test_paired_table_against_the_first_model(example, tmp_path):
    first = {0: 0.50, 1: 0.60, 2: 0.55, 3: 0.70}
    second = {1: 0.65, 2: 0.52, 3: 0.80, 4: 0.90}  # seed 4 has no partner
    paths = []
    for tag, accuracies, guide in (("a", first, "factorised"), ("b", second, "structured")):
        for seed, accuracy in accuracies.items():
            record = _result(seed, 16.0, 3.0, accuracy + 0.01, 6.0, 0.0, 0.0, 0.1)
            record["settings"]["guide"] = guide
            path = tmp_path / f"{tag}{seed}.json"
            path.write_text(json.dumps(record))
            paths.append(str(path))
    text = example.main(example.make_parser().parse_args(["--runs", *paths, "--paired"]))
    row = text.split("\n\n")[-1].splitlines()[2]
    difference = np.array([0.65 - 0.60, 0.52 - 0.55, 0.80 - 0.70])
    t = difference.mean() / (difference.std(ddof=1) / np.sqrt(3))
    # Two-sided p of Student's t with 2 degrees of freedom, in closed form: 1 - t / sqrt(2 + t^2).
    p = 1.0 - abs(t) / np.sqrt(2.0 + t * t)
    assert row.startswith("| HFVAE (beta=16), style given class | HFVAE (beta=16) | 1, 2, 3 | +0.050, -0.030, +0.100 |")
    assert f"| {p:.3f} |" in row
    # Wilcoxon, exact for 3 pairs: W = min(W+, W-) = 1 (the -0.03 has rank 1), P(W <= 1) = 2 * 2/8.
    assert row.endswith("| 0.500 | 2 of 3 |")
    # Against the second model instead, the differences change sign and the p-values stay.
    flags = ["--runs", *paths, "--paired", "--against", "HFVAE (beta=16), style given class"]
    reversed_row = example.main(example.make_parser().parse_args(flags)).split("\n\n")[-1].splitlines()[2]
    assert reversed_row.startswith("| HFVAE (beta=16) | HFVAE (beta=16), style given class | 1, 2, 3 "
                                   "| -0.050, +0.030, -0.100 |")
    assert f"| {p:.3f} |" in reversed_row and reversed_row.endswith("| 0.500 | 1 of 3 |")
    with pytest.raises(ValueError, match="expected --against to name a model"):
        example.main(example.make_parser().parse_args(["--runs", *paths, "--paired", "--against", "VAE"]))


def test_start_table_gives_the_lift_over_the_k_means_start(example, tmp_path):
    start, trained = [0.60, 0.62, 0.65, 0.58], [0.70, 0.69, 0.66, 0.75]
    paths = []
    for seed, (before, after) in enumerate(zip(start, trained)):
        record = _result(seed, 16.0, 3.0, after + 0.01, 6.0, 0.0, 0.0, 0.1)
        # seeds 0 and 1 of one budget, 2 and 3 of another: two rows, not one
        record["settings"].update(class_init="kmeans", class_init_epochs=20, class_init_fit_epochs=2,
                                  epochs=None, steps=500 if seed < 2 else 900)
        record["models"]["HFVAE (beta=16)"]["class_init"] = {"kmeans_held_out_accuracy": before}
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(record))
        paths.append(str(path))
    plain = tmp_path / "plain.json"  # a run without a start has no row
    plain.write_text(json.dumps(_result(0, 16.0, 3.0, 0.5, 6.0, 0.0, 0.0, 0.1)))
    text = example.main(example.make_parser().parse_args(["--runs", *paths, str(plain)]))
    lines = text.split("\n\n")[-1].splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| HFVAE (beta=16) + k-means start (20 beta-VAE epochs, then 500 steps) | 0, 1 |")
    assert lines[3].startswith("| HFVAE (beta=16) + k-means start (20 beta-VAE epochs, then 900 steps) | 2, 3 |")
    # All four as one budget: the lift and its tests over four seeds.
    for path in paths:
        record = json.loads(Path(path).read_text())
        record["settings"]["steps"] = 500
        Path(path).write_text(json.dumps(record))
    row = example.main(example.make_parser().parse_args(["--runs", *paths])).split("\n\n")[-1].splitlines()[2]
    lift = np.array(trained) - np.array(start)
    t = lift.mean() / (lift.std(ddof=1) / np.sqrt(4))
    assert row.startswith("| HFVAE (beta=16) + k-means start (20 beta-VAE epochs, then 500 steps) | 0, 1, 2, 3 | "
                          f"{np.mean(start):.3f} +- {np.std(start, ddof=1):.3f} | "
                          f"{np.mean(trained):.3f} +- {np.std(trained, ddof=1):.3f} | "
                          "+0.100, +0.070, +0.010, +0.170 |")
    from scipy.stats import t as student

    assert f"| {2 * student.sf(t, 3):.3g} |" in row
    # Wilcoxon, exact for 4 positive pairs: p = 2 / 2^4.
    assert row.endswith("| 0.125 | 4 of 4 |")
