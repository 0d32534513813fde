"""Smoke runs of examples/semi_supervised_mnist.py on fabricated pooled digits."""
import json

import numpy as np
import pytest
import torch

from tests.datasets.conftest import write_pooled_mnist


def parse(example, argv):
    """The script's settings for ``argv``, its ``--preset`` applied."""
    return example.parse_with_preset(example.make_parser(), example.PRESETS, argv)


@pytest.fixture
def example(load_example):
    return load_example("semi_supervised_mnist")


@pytest.fixture
def digits_folder(tmp_path, monkeypatch):
    write_pooled_mnist(tmp_path, monkeypatch, 2100, 100)
    return tmp_path


@pytest.mark.parametrize("label_unit,scoring", [("item", "relaxed"), ("batch", "argmax")])
def test_semi_supervised_mnist_smoke_and_resume(example, digits_folder, tmp_path, label_unit, scoring):
    flags = ["--preset", "smoke", "--data", str(digits_folder), "--epochs", "2",
             "--label-unit", label_unit, "--concrete-scoring", scoring, "--runs-dir", str(tmp_path / "runs"),
             "--results", str(tmp_path / "results")]
    records = example.main(parse(example, flags + ["--classifier"]))
    assert [r["method"] for r in records] == ["labelled_only_classifier", "semi_supervised_hfvae"]
    model = records[1]
    assert model["steps"] == 2 * (200 // 32) and model["num_train"] == 200 and model["num_held_out"] == 2000
    assert model["labelled_items"] == (20 if label_unit == "item" else None)
    assert records[0]["labelled_items"] == 20
    for record in records:
        assert 0.0 <= record["held_out_accuracy"] <= 1.0
    suffix = "_argmax" if scoring == "argmax" else ""
    saved = json.loads((tmp_path / "results" / f"{label_unit}_w0.1{suffix}_seed0.json").read_text())
    assert saved["concrete_scoring"] == scoring
    assert saved["held_out_accuracy"] == model["held_out_accuracy"]
    # A longer run resumes the run directory (from its checkpoint) instead of starting anew.
    longer = example.main(parse(example, flags + ["--epochs", "3", "--overwrite"]))
    assert longer[0]["steps"] == 3 * (200 // 32)
    assert longer[0]["seconds_this_session"] < longer[0]["train_seconds"]


def test_style_warmup_run(example, digits_folder, tmp_path):
    from pyro_hfvae.datasets import MNIST
    from pyro_hfvae.training import Trainer

    flags = ["--preset", "smoke", "--data", str(digits_folder), "--epochs", "3", "--supervised-weight", "1",
             "--beta", "4", "--style-warmup-epochs", "2", "--style-warmup-beta", "16",
             "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    (record,) = example.main(parse(example, flags))
    assert (record["beta"], record["style_warmup_epochs"], record["style_warmup_beta"]) == (4.0, 2, 16.0)
    run_dir = tmp_path / "runs" / "item_w1_b4_warmup2x16_seed0"
    assert record["run_dir"] == str(run_dir)
    trainer = Trainer.from_run(run_dir)
    objective = trainer.config["objective"]
    assert objective["beta"] == 4.0
    assert objective["warmup_steps"] == 2 * (200 // 32) and dict(objective["warmup_betas"]) == {"style": 16.0}
    # The accuracy on the training digits whose labels were never used, computed here from the pooled split.
    train = MNIST(digits_folder, "pooled_train")
    unlabelled = (~trainer.model.labelled_items(len(train), 0)).nonzero().squeeze(-1)
    trainer.model.eval()
    with torch.no_grad():
        predicted = trainer.model.encode(train.observations(unlabelled))["y"].argmax(-1).numpy()
    assert len(unlabelled) == 180
    assert record["unlabelled_train_accuracy"] == pytest.approx(np.mean(predicted == train.labels[unlabelled.numpy()]))
    table = example.summary(tmp_path / "results")
    assert ("(item labels, classifier weight 1, relaxed Concrete scoring, beta 4, style warm-up 2 epochs x 16) | 20 "
            in table)


def test_summary_table(example, tmp_path):
    for seed, accuracy in enumerate([0.9, 0.95, 0.92]):
        record = {"method": "semi_supervised_hfvae", "label_unit": "item", "supervised_weight": 1.0,
                  "labelled_items": 1300, "seed": seed,
                  "steps": 10, "images_seen": 1280, "held_out_accuracy": accuracy}
        (tmp_path / f"item_w1_seed{seed}.json").write_text(json.dumps(record))
    table = example.summary(tmp_path)
    row = table.splitlines()[2]
    assert row.startswith("| semi_supervised_hfvae (item labels, classifier weight 1, relaxed Concrete scoring) | 1300 "
                          "| 0, 1, 2 "
                          "| 0.9000, 0.9500, 0.9200 |")
    assert f"{np.mean([0.9, 0.95, 0.92]):.4f} +- {np.std([0.9, 0.95, 0.92], ddof=1):.4f} | 0.9200 | 1,280 |" in row


def test_paper_preset(example):
    args = parse(example, ["--preset", "paper", "--seeds", "3"])
    assert (args.epochs, args.supervised_weight, args.concrete_scoring, args.label_unit) == (200, 0.1, "argmax", "item")
    assert args.seeds == [3] and args.classifier
