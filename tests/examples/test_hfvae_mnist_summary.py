"""examples/hfvae_mnist_summary.py: tables and figures from result files of examples/hfvae_mnist.py."""
import json

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
    assert best.splitlines()[2] == "| HFVAE (beta=2) | 0 | -100.0 | 0.400 | 0.390 |"  # ties: the first seed
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


def test_a_style_warm_up_names_its_rows(example, tmp_path):
    record = _result(0, 16.0, 3.0, 0.6, 6.0, 0.0, 0.0, 0.1)
    record["settings"].update(style_warmup_epochs=5, style_warmup_beta=64.0)
    path = tmp_path / "warmup.json"
    path.write_text(json.dumps(record))
    text = example.main(example.make_parser().parse_args(["--screen", str(path), "--runs", str(path)]))
    runs_row, screen_row = text.split("\n\n")[0].splitlines()[2], text.split("\n\n")[2].splitlines()[2]
    assert runs_row.startswith("| HFVAE (beta=16) + style warm-up (5 epochs, style rate x 64) | 0 |")
    assert screen_row.startswith("| HFVAE warmup | style_warmup_epochs=5, style_warmup_beta=64.0 | 0.600 |")
